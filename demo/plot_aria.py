"""Gradio's plots as a screen reader hears them, in the page's language.

Vega (Gradio's plots) describes each plot for screen readers in English whatever the page's language, and names every
plot "Vega visualization": its axes ("X-axis titled 'step' for a linear scale with values from 0 to 1,600"), its
legend, the roles of its parts ("line mark", "point") and each point's values ("step: 10; loss: 5.1"). The page
script (run by watch_page) names each plot after its label, and on a Spanish or French page writes those descriptions
in the page's language, their numbers with its marks (as i18n.DRAWN_NUMBERS writes the axes' labels).
"""

from __future__ import annotations

import json

from demo.i18n import WRITTEN_AS, tables

# Vega's sentences, taken apart by the script and put together again from these (Vega's own words in English)
SENTENCES = ("{axis}-axis titled '{title}' for a {scale} scale with {values}",  # i18n: key
             "{axis}-axis for a {scale} scale with {values}",  # i18n: key
             "Legend titled '{title}' for {channels} with {values}", "Legend for {channels} with {values}",  # i18n: key
             "values from {low} to {high}", "1 value: {list}", "{n} values: {list}",  # i18n: key
             "{n} values: {list}, ending with {last}", "1 boundary: {list}", "{n} boundaries: {list}",  # i18n: key
             "{a} and {b}")  # i18n: key
SCALES = ("linear", "discrete", "log", "pow", "sqrt", "symlog", "time", "utc")  # i18n: key
CHANNELS = ("stroke color", "fill color", "shape", "size", "opacity")  # i18n: key
# The roles Gradio's line and bar plots give their parts (aria-roledescription)
ROLES = ("visualization", "group mark container", "axis", "legend", "line mark container",  # i18n: key
         "symbol mark container", "rect mark container", "line mark", "point", "bar")  # i18n: key

NAME_PLOTS = """() => {
  const lang = (document.documentElement.lang || 'en').split('-')[0].toLowerCase(), words = WORDS[lang] || {};
  const writtenAs = WRITTEN_AS;
  const say = (key, fields = {}) => (words[key] || key).replace(/\\{(\\w+)\\}/g, (all, name) => fields[name] ?? all);
  const list = (items) => {  // "0.5, 1.5": "0,5; 1,5" where the page's numbers hold decimal commas
    const written = items.split(', ').map((item) => writtenAs(item, lang));
    return written.join(written.some((item) => /\\d,\\d/.test(item)) ? '; ' : ', ');
  };
  const values = (text) => {
    let m = /^values from (.+) to (.+)$/s.exec(text);
    if (m) return say('values from {low} to {high}', {low: writtenAs(m[1], lang), high: writtenAs(m[2], lang)});
    if ((m = /^(\\d+) boundar(?:y|ies): (.*)$/s.exec(text))) {
      return say(m[1] === '1' ? '1 boundary: {list}' : '{n} boundaries: {list}', {n: m[1], list: list(m[2])});
    }
    if ((m = /^(\\d+) values?: (.*?)(?:, ending with (.*))?$/s.exec(text))) {
      const key = m[1] === '1' ? '1 value: {list}' : m[3] === undefined ? '{n} values: {list}'
        : '{n} values: {list}, ending with {last}';
      return say(key, {n: m[1], list: list(m[2]), last: m[3] === undefined ? '' : list(m[3])});
    }
    return null;
  };
  const channels = (text) => {
    const parts = text.split(/, | and /).map((channel) => say(channel));
    return parts.length < 2 ? parts[0] : say('{a} and {b}', {a: parts.slice(0, -1).join(', '), b: parts.at(-1)});
  };
  const axis = /^([XY])-axis(?: titled '(.*)')? for a (\\w+) scale with (.*)$/s;
  const told = String.raw`(?:\\d+ (?:values?|boundar(?:y|ies)): |values from )`;  // how values() begins
  const legend = new RegExp(String.raw`^(?:\\w+ )?[Ll]egend(?: titled '(.*)')? for (.+?) with (${told}.*)$`, 's');
  const describe = (text) => {  // Vega's sentence in the page's language (null: not one of Vega's)
    let m = axis.exec(text), said;
    if (m && (said = values(m[4])) !== null) {
      const key = m[2] === undefined ? '{axis}-axis for a {scale} scale with {values}'
        : "{axis}-axis titled '{title}' for a {scale} scale with {values}";
      return say(key, {axis: m[1], title: m[2], scale: say(m[3]), values: said});
    }
    if ((m = legend.exec(text)) && (said = values(m[3])) !== null) {
      const key = m[1] === undefined ? 'Legend for {channels} with {values}'
        : "Legend titled '{title}' for {channels} with {values}";
      return say(key, {title: m[1], channels: channels(m[2]), values: said});
    }
    return null;
  };
  const point = (text) => text.split('; ').map((pair) => {  // "step: 10; loss: 5.1": each value with the page's marks
    const at = pair.lastIndexOf(': ');
    return at < 0 ? pair : pair.slice(0, at + 2) + writtenAs(pair.slice(at + 2), lang);
  }).join('; ');
  const name = (plot) => {
    const label = plot.closest('.block')?.querySelector('[data-testid=block-info]')?.textContent.trim();
    if (label && plot.getAttribute('aria-label') !== label) plot.setAttribute('aria-label', label);
    if (lang === 'en') return;
    for (const part of [plot, ...plot.querySelectorAll('[aria-roledescription]')]) {
      const role = part.getAttribute('aria-roledescription');
      if (role && words[role] && words[role] !== role) part.setAttribute('aria-roledescription', words[role]);
    }
    for (const part of plot.querySelectorAll('svg [aria-label]')) {
      const text = part.getAttribute('aria-label');
      if (part.dataset.ariaWritten === text) continue;  // already written ("5,1" would be read as English again)
      part.dataset.ariaWritten = describe(text) ?? point(text);
      if (part.dataset.ariaWritten !== text) part.setAttribute('aria-label', part.dataset.ariaWritten);
    }
  };
  for (const plot of document.querySelectorAll('.vega-embed')) {
    name(plot);
    if (plot.dataset.ariaWatched) continue;  // Vega writes new data's labels in place, which watch_page does not see
    plot.dataset.ariaWatched = '1';
    new MutationObserver(() => name(plot)).observe(plot, {subtree: true, attributeFilter: ['aria-label',
                                                                                          'aria-roledescription']});
  }
}""".replace("WRITTEN_AS", WRITTEN_AS).replace(  # i18n: not shown (JavaScript)
    "WORDS", json.dumps({lang: {w: table[w] for w in (*SENTENCES, *SCALES, *CHANNELS, *ROLES) if w in table}
                         for lang, table in tables().items()}, ensure_ascii=False))
