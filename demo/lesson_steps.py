"""The guided lesson's steps, as data: GPT-2's 2019 story in ten short steps, each one idea, one action, one question.

tokens -> next-token probabilities -> temperature, top-k and top-p -> sampling and seeds -> the Unicorns sample ->
attention (GPT-2's triangle, BERT's square) -> layers (the logit lens) -> scale -> training a mini GPT-2 -> spotting
machine text. Each step names the tab it opens and that tab's inputs as a share link writes them (demo/links.py reads
and checks them, so a step fills a tab exactly as a link would). The Unicorns step takes OpenAI's prompt and the app's
fixed settings and seed from assets/examples.json. The view is demo/lesson_tab.py.

Facts the texts rely on: GPT-2's vocabulary has 50,257 tokens and its context 1,024; it was trained on WebText (about
40 GB from 8 million web pages); its sizes are 124M, 355M, 774M and 1.5B parameters, GPT-2 small having 12 layers;
OpenAI announced it on 14 February 2019 with the unicorn sample (the best of 10 tries of the 1.5B model) and released
the 1.5B model in November 2019 (OpenAI, "Better Language Models and Their Implications", and the GPT-2 paper).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from demo.examples import load_examples


@dataclass(frozen=True)
class Step:
    title: str  # a few words, for the step list
    idea: str  # one idea, in 1-3 sentences a 14-year-old understands
    action: str  # what to click or do in the opened tab
    question: str  # for the class to discuss
    notice: str  # what to notice: the short answer, shown on request
    tab: str  # the tab the step opens (one of demo/links.py's TABS)
    link: dict[str, str] = field(default_factory=dict)  # that tab's inputs, as a share link's query writes them

    @property
    def query(self) -> dict[str, str]:
        """The share link's query that opens this step's tab with its inputs."""
        return {"tab": self.tab, **self.link}


def _unicorn_link() -> dict[str, str]:
    """OpenAI's 2019 prompt with the Unicorns example's fixed settings and seed, as a Generate link writes them."""
    unicorn = load_examples().unicorn
    settings = unicorn.settings
    names = ("max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "seed", "num_samples")
    return {"prompt": unicorn.prompt, **{name: str(getattr(settings, name)) for name in names}}


def _scale_link() -> dict[str, str]:
    """The Unicorns prompt with its fixed seed (the Unicorns step's; the Scale tab's default too): every size
    continues the same story."""
    unicorn = load_examples().unicorn
    return {"prompt": unicorn.prompt, "seed": str(unicorn.settings.seed)}


def _human_link() -> dict[str, str]:
    """Spot the machine's first human paragraph (Jerome K. Jerome, 1889): the class colours a person's text first."""
    return {"text": load_examples().human[0].text}


NEXT_WORD_OFF = {"temperature": "1", "top_k": "0", "top_p": "1"}  # the settings changing nothing: GPT-2's own chances

STEPS: tuple[Step, ...] = (
    Step(
        title="Tokens",  # i18n: key
        idea="GPT-2 does not read letters or whole words: it reads **tokens**, pieces of text from a list of 50,257. "
             "A common word is one token, usually with the space before it (\" the\"); a rare word is cut into "
             "several pieces.",  # i18n: key
        action="Press **Colour the tokens**. Each coloured box is one token: count them, and find the words that "
               "were cut into pieces.",  # i18n: key
        question="Which words were cut into pieces? Why would a common word get a token of its own?",  # i18n: key
        notice="Rare words, names and long numbers come in pieces, because GPT-2's list of tokens was built from the "
               "pieces of text that were most frequent in what it read. Frequent words got tokens of their own. With "
               "pieces, GPT-2 can read and write any text, even words it has never seen.",  # i18n: key
        tab="score",
        link={"text": "The hippopotamus ate 1,250 strawberries on Tuesday. Unbelievable!"},  # i18n: not shown (GPT-2's prompt)
    ),
    Step(
        title="Next word",  # i18n: key
        idea="GPT-2 does one thing: it reads the text so far and gives every one of its 50,257 tokens a probability "
             "of coming next. Writing a text is doing that again and again, one token at a time.",  # i18n: key
        action="Read the bars: GPT-2's likeliest next tokens. Click a bar to add its token to the text, and watch "
               "the bars change.",  # i18n: key
        question="Why does GPT-2 give a chance to several words instead of picking the one right answer?",  # i18n: key
        notice="Many words could come next, and each makes sense. GPT-2 learned from millions of texts how often each "
               "token followed text like this one, so it spreads its bets; the chances of all 50,257 tokens add up "
               "to 100%.",  # i18n: key
        tab="explore",
        link={"prompt": "After school, the students opened their", **NEXT_WORD_OFF},  # i18n: not shown (GPT-2's prompt)
    ),
    Step(
        title="Temperature, top-k, top-p",  # i18n: key
        idea="Before a token is drawn, settings reshape the chances. **Temperature** below 1 makes likely tokens "
             "likelier (0 always takes the top one), above 1 gives rare tokens more chance. **Top-k** keeps only "
             "the k likeliest tokens; **top-p** keeps the fewest top tokens whose chances add up to p.",  # i18n: key
        action="Move **Temperature** to 0.2, then to 1.8, and compare the left chart with GPT-2's own chances on the "
               "right. Then set it back to 1 and try **Top-k** 3, then **Top-p** 0.5.",  # i18n: key
        question="Which settings would you choose for a safe, predictable text, and which for a surprising one? What "
                 "could go wrong with each?",  # i18n: key
        notice="A low temperature or a small top-k gives safe text that can repeat itself in a loop. A high "
               "temperature lets odd tokens in, and the text soon stops making sense. This app's Unicorns example "
               "takes the middle way: temperature 0.7 and top-k 40.",  # i18n: key
        tab="explore",
        link={"prompt": "My favourite food is", **NEXT_WORD_OFF},  # i18n: not shown (GPT-2's prompt)
    ),
    Step(
        title="Sampling and seeds",  # i18n: key
        idea="GPT-2 draws each token at random, like rolling a die weighted by the chances. The **seed** is where "
             "the random numbers start: the same seed, settings and model give the same text every time.",  # i18n: key
        action="Press **Generate** twice: the seed is 42 both times, so the text is the same. Then set **Seed** to "
               "-1 (random) and press Generate twice more.",  # i18n: key
        question="Is GPT-2's text decided or random? Why is a fixed seed useful to a class?",  # i18n: key
        notice="Both: the model decides the chances, the die decides among them. A fixed seed replays the same rolls, "
               "so everyone on the same model sees the same text and can talk about it. Temperature 0 needs no die "
               "at all: it always takes the likeliest token.",  # i18n: key
        tab="generate",
        link={"prompt": "Once upon a time, in a village by the sea,",  # i18n: not shown (GPT-2's prompt)
              "max_new_tokens": "40", "temperature": "1", "top_k": "40", "top_p": "1", "repetition_penalty": "1",
              "seed": "42", "num_samples": "1"},
    ),
    Step(
        title="The unicorns",  # i18n: key
        idea="In February 2019, OpenAI announced GPT-2 with this prompt about unicorns in the Andes. The news story "
             "GPT-2 wrote sounded so human that OpenAI held back its largest model for nine months, for fear of fake "
             "news.",  # i18n: key
        action="Press **Generate** and read the story together. The settings and the seed are fixed (temperature "
               "0.7, top-k 40, seed 2019), so the whole class sees the same story.",  # i18n: key
        question="What makes the story sound real, and what in it is made up?",  # i18n: key
        notice="It has a news article's style, with a scientist's name, a university and quotes, learned from "
               "millions of web pages. Nothing in it was checked: GPT-2 predicts likely words, not true facts. "
               "OpenAI's story was the best of 10 tries by GPT-2's largest size (1.5 billion parameters); this page's "
               "model may be smaller.",  # i18n: key
        tab="generate",
        link=_unicorn_link(),
    ),
    Step(
        title="Attention",  # i18n: key
        idea="Inside GPT-2, each token gathers meaning from other tokens: this is **attention**. GPT-2 may only "
             "look at the tokens before it, so its attention map is a triangle. BERT, a model made to fill in "
             "blanks, looks both ways: its map is a full square.",  # i18n: key
        action="Find the grey triangle in GPT-2's map (what it cannot see). Then, under **Follow a word**, pick "
               "\"it\" and read where it looks in each model.",  # i18n: key
        question="Why is GPT-2 not allowed to look at the words after? Would looking ahead help it write?",  # i18n: key
        notice="When GPT-2 writes, the later words do not exist yet, and in training, seeing them would let it copy "
               "the answer instead of learning to predict it. BERT fills a blank in a finished sentence, so it may "
               "look both ways, but it cannot write a text word by word as GPT-2 does.",  # i18n: key
        tab="inside",
        link={"text": "The animal didn't cross the street because it was too tired."},  # i18n: not shown (GPT-2's prompt)
    ),
    Step(
        title="Layers",  # i18n: key
        idea="GPT-2 small is a stack of 12 layers, and each layer adds to a running guess about the next token. The "
             "**logit lens** reads that guess after every layer, as if GPT-2 had to answer early.",  # i18n: key
        action="Look at the last column, the guesses for what comes after \"of\": from which layer on is \" Paris\" "
               "the top guess? The chart follows \" Paris\" through the layers.",  # i18n: key
        question="Does GPT-2 know the answer from its first layer, or does it build it up?",  # i18n: key
        notice="The first layers guess common tokens such as \" the\"; the answer climbs to the top in later layers. "
               "What GPT-2 knows about Paris is spread over many layers' numbers, not kept in one place. (A small or "
               "home-trained model may never find Paris: it has not read enough.)",  # i18n: key
        tab="layers",
        link={"text": "The Eiffel Tower is in the city of", "target": " Paris"},  # i18n: not shown (GPT-2's prompt)
    ),
    Step(
        title="Scale",  # i18n: key
        idea="GPT-2 came in four sizes, from 124 million to 1.5 billion **parameters** (the numbers it learns). "
             "OpenAI called it a direct scale-up of its first GPT: more than 10 times the parameters, trained on "
             "more than 10 times the data.",  # i18n: key
        action="Press **Run every size**: the same prompt and seed on every size this machine has. Compare the texts "
               "and the chart of surprise.",  # i18n: key
        question="What gets better as the model grows, and what does it cost?",  # i18n: key
        notice="Bigger models are less surprised by human text (fewer bits per token) and keep a story together for "
               "longer. They need more memory and time: 1.5 billion parameters take 6 GB as 32-bit numbers.",  # i18n: key
        tab="scale",
        link=_scale_link(),
    ),
    Step(
        title="Train a mini GPT-2",  # i18n: key
        idea="GPT-2 learned by reading about 40 GB of web pages (8 million of them) and nudging its numbers each time "
             "it guessed the next token wrong. Here you can train a tiny one from random numbers in two minutes.",  # i18n: key
        action="Press **Start training** (a tiny GPT-2 on Shakespeare). Watch the loss (how wrong its guesses are) "
               "fall, and read the samples as they arrive.",  # i18n: key
        question="What does the model learn first: letters, words, grammar or meaning?",  # i18n: key
        notice="First frequent letters and spaces, then short common words, then the shape of the text (a name, then "
               "a line, in a play). Grammar comes slowly and meaning hardly at all: the real GPT-2 read thousands of "
               "times more text, with at least 30 times more parameters.",  # i18n: key
        tab="train",
        link={"minutes": "2"},
    ),
    Step(
        title="Spot the machine",  # i18n: key
        idea="A model's text is made of tokens that the model itself finds likely. Spot the machine colours each "
             "token by its rank among GPT-2's guesses: green for its 10 likeliest, yellow 100, red 1000, purple "
             "rarer.",  # i18n: key
        action="A person wrote this paragraph: press **Colour the tokens**. Then press **Fill with a GPT-2 sample**, "
               "which colours its text at once, and compare the colours.",  # i18n: key
        question="Which text has more green? Could these colours prove that a machine wrote a text?",  # i18n: key
        notice="The sample is mostly green because it was drawn from GPT-2's own likely tokens; people choose more "
               "surprising words. It is a hint, never proof: short or famous texts look predictable, and a sample "  # i18n: key
               "drawn at a high temperature looks human. The idea comes from GLTR (2019), a tool made to spot GPT-2.",
        tab="score",
        link=_human_link(),
    ),
)
