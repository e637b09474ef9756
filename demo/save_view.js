// Save a view as PNG: the browser paints the element as the page shows it onto a canvas, under a title and a caption
// (the model, the settings) and above a note (what the colours mean) and the app's name and the date.
//
// The painting walks the element: backgrounds and borders from the computed style, text where the browser laid it
// out (each line of each text node, in the page's own loaded fonts), <canvas> copied, <svg> (attention maps, Vega's
// charts, icons) drawn as an image of itself with its styles inlined. No foreignObject: Safari refuses to export a
// canvas that drew one. Installed once by the page script as window.gpt2SaveView (demo/save_view.py).
() => {
  const SCALE = 2;  // device pixels per CSS pixel: crisp on a projector and in print
  const MAX_SIDE = 16000;  // browsers refuse larger canvases; a long text is drawn at a smaller scale instead
  const PAD = 20;
  const LONGEST = 240;  // characters of an input quoted in a caption's sentence
  // Colours and faces from the page's CSS; sizes stay the SVG's own, in its own units (a computed size is zoomed)
  const SVG_STYLES = ["fill", "fill-opacity", "stroke", "stroke-opacity", "opacity", "font-family", "font-weight",
    "font-style", "text-anchor", "dominant-baseline", "visibility", "display"];
  let zoom = 1;  // CSS zoom over the view ("Large text"): boxes are measured zoomed, computed sizes are not
  // The page's language (Gradio sets <html lang>), and this script's messages in it: save_view.py writes the table
  // from demo/locales/save_view.json; the options' texts come in every language, {en: ..., es: ..., fr: ...}
  const MESSAGES = BROWSER_MESSAGES;
  const lang = () => (document.documentElement.lang || "en").split("-")[0].toLowerCase();
  const t = (text) => (MESSAGES[lang()] || {})[text] || text;
  const pick = (text) => (text && typeof text === "object" ? text[lang()] ?? text.en : text) || "";

  const visible = (color) => color && color !== "transparent" && !/rgba\([^)]*,\s*0\)$/.test(color);

  function valueOf(selector) {
    const el = document.querySelector(selector);
    if (!el) return "";
    const raw = /^(INPUT|TEXTAREA)$/.test(el.tagName) ? el.value : el.innerText;
    return (raw || "").trim();
  }

  // A caption template: "{selector}" alone gives that element's lines; in a sentence, its text on one line.
  // A line whose element is missing or empty is left out, rather than shown half filled.
  function captionLines(template) {
    const whole = template.match(/^\{([^{}]+)\}$/);
    if (whole) return valueOf(whole[1]).split("\n").map((l) => l.trim()).filter(Boolean);
    let missing = false;
    const line = template.replace(/\{([^{}]+)\}/g, (_, selector) => {
      let v = valueOf(selector).replace(/\s+/g, " ");
      if (v.length > LONGEST) v = "\u2026" + v.slice(-LONGEST);  // a long text so far: its end leads to the view
      if (!v) missing = true;
      return v;
    });
    return missing ? [] : [line];
  }

  function wrap(ctx, text, width) {
    const lines = [];
    let line = "";
    for (const word of text.split(" ")) {
      const next = line ? line + " " + word : word;
      if (line && ctx.measureText(next).width > width) {
        lines.push(line);
        line = word;
      } else line = next;
    }
    if (line) lines.push(line);
    return lines;
  }

  function fontOf(st) {
    return `${st.fontStyle} ${st.fontWeight} ${parseFloat(st.fontSize) * zoom}px ${st.fontFamily}`;
  }

  function backgroundFill(ctx, st, r) {
    if (visible(st.backgroundColor)) return st.backgroundColor;
    const g = st.backgroundImage.match(/linear-gradient\((.*)\)/);  // gr.Label's bars
    if (!g) return null;
    const colors = g[1].match(/rgba?\([^)]*\)|#[0-9a-f]{3,8}/gi) || [];
    if (colors.length === 0) return null;
    if (colors.length === 1) return colors[0];
    const across = /to (right|left)/.test(g[1]);
    const fill = across ? ctx.createLinearGradient(r.left, 0, r.right, 0) : ctx.createLinearGradient(0, r.top, 0, r.bottom);
    if (/to left/.test(g[1])) colors.reverse();
    colors.forEach((c, i) => fill.addColorStop(i / (colors.length - 1), c));
    return fill;
  }

  // CSS draws no borders on a table's rows, row groups and columns where its borders are separate (the layers grid):
  // their computed borders (Gradio's prose gives rows one) are not on the page, so not in the picture either
  function bordersIgnored(el, st) {
    if (!/^table-(row|row-group|header-group|footer-group|column|column-group)$/.test(st.display)) return false;
    for (let e = el.parentElement; e; e = e.parentElement) {  // the box that makes the table
      const table = getComputedStyle(e);
      if (/^(inline-)?table$/.test(table.display)) return table.borderCollapse === "separate";
    }
    return true;  // an anonymous table around the rows: separate borders, CSS's default
  }

  function paintBox(ctx, el, st, o) {
    for (const b of el.getClientRects()) {
      const r = {left: b.left - o.x, top: b.top - o.y, right: b.right - o.x, bottom: b.bottom - o.y,
        width: b.width, height: b.height};
      const fill = backgroundFill(ctx, st, r);
      if (fill) {
        ctx.fillStyle = fill;
        ctx.beginPath();
        const radius = Math.min((parseFloat(st.borderTopLeftRadius) || 0) * zoom, r.width / 2, r.height / 2);
        if (radius > 0 && ctx.roundRect) ctx.roundRect(r.left, r.top, r.width, r.height, radius);
        else ctx.rect(r.left, r.top, r.width, r.height);
        ctx.fill();
      }
      if (bordersIgnored(el, st)) continue;
      for (const side of ["Top", "Bottom", "Left", "Right"]) {
        const w = (parseFloat(st[`border${side}Width`]) || 0) * zoom;
        const color = st[`border${side}Color`], style = st[`border${side}Style`];
        if (!w || style === "none" || style === "hidden" || !visible(color)) continue;
        const h = w / 2;  // a border's middle line
        const [x0, y0, x1, y1] = {Top: [r.left, r.top + h, r.right, r.top + h],
          Bottom: [r.left, r.bottom - h, r.right, r.bottom - h], Left: [r.left + h, r.top, r.left + h, r.bottom],
          Right: [r.right - h, r.top, r.right - h, r.bottom]}[side];
        ctx.save();
        ctx.strokeStyle = color;
        ctx.lineWidth = w;
        ctx.setLineDash(style === "dotted" ? [w, w * 2] : style === "dashed" ? [w * 3, w * 2] : []);
        ctx.beginPath();
        ctx.moveTo(x0, y0);
        ctx.lineTo(x1, y1);
        ctx.stroke();
        ctx.restore();
      }
    }
  }

  // Each line of a text node where the browser put it: characters are grouped into runs that share a line box.
  function paintText(ctx, node, st, o) {
    const text = node.textContent;
    if (!text.trim() || !visible(st.color)) return;
    ctx.font = fontOf(st);
    ctx.fillStyle = st.color;
    ctx.textBaseline = "alphabetic";
    const range = document.createRange();
    let run = "", first = null;
    const flush = () => {
      if (run.trim() && first) {
        const m = ctx.measureText(run);
        const ascent = m.fontBoundingBoxAscent ?? m.actualBoundingBoxAscent;
        const descent = m.fontBoundingBoxDescent ?? m.actualBoundingBoxDescent;
        ctx.fillText(run, first.left - o.x, first.top - o.y + (first.height - ascent - descent) / 2 + ascent);
      }
      run = "";
      first = null;
    };
    for (let i = 0; i < text.length;) {
      const size = text.codePointAt(i) > 0xffff ? 2 : 1;
      const ch = text.slice(i, i + size);
      range.setStart(node, i);
      range.setEnd(node, i + size);
      i += size;
      const r = range.getClientRects()[0];
      if (!r || ch === "\n") { flush(); continue; }
      if (r.width === 0) continue;  // white space that the layout collapsed: not drawn, and it moves nothing
      if (first && Math.abs(r.top - first.top) < 2 && r.left >= first.left) run += ch;
      else { flush(); run = ch; first = r; }
    }
    flush();
  }

  function inlineSvgStyles(src, dst) {
    if (src.nodeType !== 1) return;
    const st = getComputedStyle(src);
    dst.setAttribute("style", SVG_STYLES.map((p) => `${p}:${st.getPropertyValue(p)}`).join(";"));
    for (let i = 0; i < src.children.length; i++) inlineSvgStyles(src.children[i], dst.children[i]);
  }

  async function paintSvg(ctx, el, o) {
    const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) return;
    const copy = el.cloneNode(true);
    inlineSvgStyles(el, copy);
    copy.setAttribute("xmlns", "http://www.w3.org/2000/svg");
    copy.setAttribute("width", r.width);
    copy.setAttribute("height", r.height);
    const image = new Image();
    image.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(new XMLSerializer().serializeToString(copy));
    await image.decode();
    ctx.drawImage(image, r.left - o.x, r.top - o.y, r.width, r.height);
  }

  // The view's content without its frame and its own label (the picture's title says it): its shown children
  function contentOf(view, skip) {
    const parts = [...view.children].filter((c) => !skip(c) && getComputedStyle(c).display !== "none" &&
      getComputedStyle(c).position !== "absolute").map((c) => c.getBoundingClientRect()).filter((r) => r.width && r.height);
    if (parts.length === 0) return view.getBoundingClientRect();
    const left = Math.min(...parts.map((r) => r.left)), top = Math.min(...parts.map((r) => r.top));
    const right = Math.max(...parts.map((r) => r.right)), bottom = Math.max(...parts.map((r) => r.bottom));
    return {left, top, right, bottom, width: right - left, height: bottom - top};
  }

  async function paint(ctx, el, o, skip) {
    if (skip(el)) return;
    const st = getComputedStyle(el);
    if (st.display === "none" || st.visibility === "hidden" || parseFloat(st.opacity) < 0.05) return;
    const tag = el.tagName.toLowerCase();
    if (tag === "svg") return paintSvg(ctx, el, o);
    if (tag === "canvas" || (tag === "img" && el.complete)) {
      const r = el.getBoundingClientRect();
      ctx.drawImage(el, r.left - o.x, r.top - o.y, r.width, r.height);
      return;
    }
    paintBox(ctx, el, st, o);
    const clips = /hidden|clip|auto|scroll/.test(st.overflowX + st.overflowY);
    if (clips) {
      const r = el.getBoundingClientRect();
      ctx.save();
      ctx.beginPath();
      ctx.rect(r.left - o.x, r.top - o.y, r.width, r.height);
      ctx.clip();
    }
    for (const child of el.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) paintText(ctx, child, st, o);
      else if (child.nodeType === Node.ELEMENT_NODE) await paint(ctx, child, o, skip);
    }
    if (clips) ctx.restore();
  }

  function backgroundOf(el) {
    for (let e = el; e; e = e.parentElement) {
      const bg = getComputedStyle(e).backgroundColor;
      if (visible(bg)) return bg;
    }
    return "#ffffff";
  }

  function say(message) {
    const note = document.createElement("div");
    note.className = "save-view-note";
    note.setAttribute("role", "status");
    note.textContent = message;
    document.body.appendChild(note);
    setTimeout(() => note.remove(), 5000);
  }

  function download(canvas, file) {
    return new Promise((done, fail) => canvas.toBlob((blob) => {
      if (!blob) return fail(new Error(t("the browser made no picture")));
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = file;
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
      done();
    }, "image/png"));
  }

  // Lay out whole, while the picture is painted, a view that scrolls sideways (the layers grid on a phone): each
  // sideways scroller and the boxes around it inside the view grow to their content, and sticky labels stay in their
  // own column instead of riding over the cells. Each change is recorded in `undo` before it is made, so that
  // `putBack(undo)` restores the page even after an error half-way.
  function unroll(view, undo) {
    const set = (el, style) => {
      undo.push([el, el.getAttribute("style"), el.scrollLeft, el.scrollTop]);
      Object.assign(el.style, style);
    };
    for (const el of view.querySelectorAll("*")) {
      const st = getComputedStyle(el);
      if (st.position === "sticky") set(el, {position: "static"});
      if (/auto|scroll/.test(st.overflowX) && el.scrollWidth > el.clientWidth + 1) {
        for (let e = el; e && e !== view; e = e.parentElement) {
          set(e, {overflow: "visible", width: "max-content", maxWidth: "none"});
        }
      }
    }
  }

  function putBack(undo) {
    for (const [el, style, left, top] of undo.splice(0).reverse()) {  // once: then nothing left to undo
      if (style === null) el.removeAttribute("style");
      else el.setAttribute("style", style);
      el.scrollLeft = left;
      el.scrollTop = top;
    }
  }

  // Two frames, so the new layout is drawn; at most 100 ms (a tab in the background gets no frames)
  const frame = () => new Promise((done) => {
    requestAnimationFrame(() => requestAnimationFrame(done));
    setTimeout(done, 100);
  });

  // options: view (elem_id), file, title (else the view's own label), caption (templates), note, needs (a selector
  // that the view must contain to have something to save), whole (lay out a sideways-scrolling view whole: unroll)
  window.gpt2SaveView = async (options) => {
    const view = document.getElementById(options.view);
    const label = view && view.querySelector(":scope > [data-testid=block-label], :scope > [data-testid=block-info]");
    const skip = (el) => el === label || el.matches(".icon-button-wrapper, [data-testid=status-tracker], .save-view");
    if (!view || !contentOf(view, skip).width || (options.needs && !view.querySelector(options.needs))) {
      say(t("Nothing to save yet: this view is still empty."));
      return;
    }
    const undo = [];
    try {
      if (options.whole) unroll(view, undo);
      await document.fonts.ready;
      if (options.whole) await frame();  // laid out whole before anything is measured
      const box = contentOf(view, skip);
      zoom = 1;
      for (let e = view; e; e = e.parentElement) zoom *= parseFloat(getComputedStyle(e).zoom) || 1;
      const title = pick(options.title) || (label && label.innerText.trim()) ||
        (view.querySelector("svg > title") || {}).textContent || "";
      const captions = (options.caption || []).map(pick).flatMap(captionLines);
      const local = /^(localhost|127\.|0\.0\.0\.0|\[::1\])/.test(location.hostname);  // a reader could not open it
      const stamp = ["GPT-2 Playground", local ? "" : location.host, new Date().toISOString().slice(0, 10)]
        .filter(Boolean).join(" \u00b7 ");
      const st = getComputedStyle(view);
      const font = st.fontFamily;
      const ink = st.color;  // the view's own text colour: light on a dark theme
      const width = Math.ceil(Math.max(box.width, 360));
      const measure = document.createElement("canvas").getContext("2d");
      const block = (text, size, weight) => {
        measure.font = `${weight} ${size}px ${font}`;
        return {lines: text ? wrap(measure, text, width) : [], size, weight, height: Math.round(size * 1.35)};
      };
      const head = [block(title, 22, 700), ...captions.map((c) => block(c, 16, 400))];
      const foot = [block(pick(options.note), 15, 400), block(stamp, 13, 400)];
      const height = (parts) => parts.reduce((h, p) => h + p.lines.length * p.height, 0);
      const headH = height(head) + 12, footH = height(foot) + 12;
      const W = width + 2 * PAD, H = Math.ceil(PAD + headH + box.height + footH + PAD);
      const scale = Math.min(SCALE, MAX_SIDE / Math.max(W, H));
      const canvas = document.createElement("canvas");
      canvas.width = Math.round(W * scale);
      canvas.height = Math.round(H * scale);
      const ctx = canvas.getContext("2d");
      ctx.scale(scale, scale);
      ctx.fillStyle = backgroundOf(view);
      ctx.fillRect(0, 0, W, H);
      const write = (parts, y, subdued) => {  // the title in the page's ink, the rest lighter (light or dark theme)
        ctx.textBaseline = "top";
        ctx.fillStyle = ink;
        for (const [i, p] of parts.entries()) {
          ctx.font = `${p.weight} ${p.size}px ${font}`;
          ctx.globalAlpha = i === 0 && !subdued ? 1 : 0.75;
          for (const line of p.lines) {
            ctx.fillText(line, PAD, y);
            y += p.height;
          }
        }
        ctx.globalAlpha = 1;
      };
      write(head, PAD, false);
      ctx.save();
      ctx.translate(PAD, PAD + headH);
      const origin = {x: box.left, y: box.top};
      for (const child of view.children) await paint(ctx, child, origin, skip);
      ctx.restore();
      write(foot, PAD + headH + box.height + 12, true);
      putBack(undo);  // painted: the page as it was while the file is written
      await download(canvas, options.file);
    } catch (error) {
      console.error(error);
      say(t("The picture could not be saved here ({why}).").replace("{why}", () => error.message || error));
    } finally {
      putBack(undo);
    }
  };
}
