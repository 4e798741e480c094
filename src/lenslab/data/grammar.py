"""Question formation (``data.task = "question"``): English yes/no questions from a small
grammar, with training data that fits a hierarchical and a linear rule.

The design is McCoy, Frank and Linzen's (2020, "Does syntax need to grow on trees?"): subjects
and objects may carry a prepositional phrase or a relative clause, every verb comes with an
auxiliary (``does``/``doesn't`` in the singular, ``do``/``don't`` in the plural), and a question
moves the main clause's auxiliary to the front. Training questions never have a relative clause
on the subject, so their first auxiliary *is* the main one: "move the main auxiliary" and "move
the first auxiliary" fit them equally. Sentences are drawn from the grammar here, with a
smaller lexicon than theirs (the structure is what matters to the probe).

Each example is one token sequence for a decoder-only model, trained as a language model on
every token (as Murty et al. 2023 trained theirs)::

    the newt near my yaks does giggle . quest does the newt near my yaks giggle ?
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from lenslab.config import QuestionData
from lenslab.data.base import IGNORE, rng_for

_TRAIN, _EVAL, _PROBE = 0, 1, 2

DETS = ("the", "some", "my", "your", "her", "our")
NOUNS = ("newt", "yak", "raven", "walrus", "zebra", "quail", "unicorn", "peacock")
PLURAL = {"walrus": "walruses"}  # the rest add -s
INTRANS = ("giggle", "smile", "sleep", "swim", "wait", "read")
TRANS = ("amuse", "admire", "applaud", "confuse", "remember", "visit")
PREPS = ("near", "behind", "above", "with", "by", "around")
RELS = ("that", "who")
AUX = {True: ("do", "don't"), False: ("does", "doesn't")}  # plural?: the two auxiliaries
SPECIAL = (".", "?", "decl", "quest", "<pad>")
MAX_WORDS = 16  # the longest declarative, without its full stop (see Sentence)


@dataclass
class Sentence:
    """A declarative as words, with where its auxiliaries are: ``main`` (index of the main
    clause's auxiliary) and ``first`` (index of the first auxiliary of the sentence)."""

    words: list[str]
    main: int
    first: int

    @property
    def rc_subject(self) -> bool:
        """Does an auxiliary come before the main one (a relative clause on the subject)?"""
        return self.first < self.main

    def question(self, move: int | None = None) -> list[str]:
        """The question made by moving the auxiliary at ``move`` (default: the main one)."""
        i = self.main if move is None else move
        return [self.words[i], *self.words[:i], *self.words[i + 1:], "?"]


class _Grammar:
    """Sentences drawn from the grammar with a numpy generator (every choice uniform)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def noun(self) -> tuple[str, bool]:
        n, plural = self.pick(NOUNS), bool(self.rng.integers(2))
        return (PLURAL.get(n, n + "s") if plural else n), plural

    def aux(self, plural: bool) -> str:
        return self.pick(AUX[plural])

    def relative(self, plural: bool) -> list[str]:
        """A relative clause on a noun of number ``plural``: subject relatives (intransitive or
        transitive) twice as often as object relatives, as in McCoy et al.'s grammar."""
        kind = self.pick(("subj_i", "subj_i", "subj_t", "subj_t", "obj", "obj"))
        rel = self.pick(RELS)
        if kind == "subj_i":
            return [rel, self.aux(plural), self.pick(INTRANS)]
        if kind == "subj_t":
            n, _ = self.noun()
            return [rel, self.aux(plural), self.pick(TRANS), self.pick(DETS), n]
        n, p2 = self.noun()
        return [rel, self.pick(DETS), n, self.aux(p2), self.pick(TRANS)]

    def np(self, modifier: str) -> tuple[list[str], bool]:
        """A noun phrase with ``modifier`` "none", "pp" or "rc"."""
        n, plural = self.noun()
        words = [self.pick(DETS), n]
        if modifier == "pp":
            n2, _ = self.noun()
            words += [self.pick(PREPS), self.pick(DETS), n2]
        elif modifier == "rc":
            words += self.relative(plural)
        return words, plural

    def sentence(self, rc_subject: bool | None = None) -> Sentence:
        """A declarative; ``rc_subject`` forces (True) or forbids (False) a relative clause on
        the subject (None: a third of subjects have one)."""
        if rc_subject is None:
            mod = self.pick(("none", "pp", "rc"))
        else:
            mod = "rc" if rc_subject else self.pick(("none", "pp"))
        subj, plural = self.np(mod)
        main = len(subj)
        words = subj + [self.aux(plural)]
        if self.rng.integers(2):
            words.append(self.pick(INTRANS))
        else:
            obj, _ = self.np(self.pick(("none", "pp", "rc")))
            words += [self.pick(TRANS), *obj]
        first = next(i for i, w in enumerate(words) if w in AUX[False] + AUX[True])
        return Sentence(words, main, first)


def clause_kind(s: Sentence) -> str:
    """The relative clause on the subject: ``object`` (``that the yak does visit``: the
    auxiliary follows a noun), ``subject, intransitive`` (``that does giggle``) or ``subject,
    transitive`` (``that does visit the yak``): the auxiliary follows the relativizer), or
    ``none``. McCoy et al. report first-word accuracy by these kinds."""
    if not s.rc_subject:
        return "none"
    w = s.words
    if w[3] in DETS:
        return "object"
    return "subject, intransitive" if w[4] in INTRANS else "subject, transitive"


class QuestionTask:
    """Declaratives and questions as token sequences: ``decl . TASK out``, padded at the end.

    Rules the probe tells apart (:meth:`probe_inputs`), on questions of sentences with a
    relative clause on the subject whose auxiliary differs from the main one: ``hierarchical``
    (the main auxiliary comes first: the rule we mean) and ``linear`` (the first auxiliary of
    the sentence comes first). The model's first word of the question is read with one forward
    pass: it is the argmax after the task word ``quest``.
    """

    name = "question"
    rules = ("hierarchical", "linear")
    intended = "hierarchical"

    def __init__(self, cfg: QuestionData, seed: int):
        self.cfg = cfg
        self.seed = seed
        words: list[str] = list(DETS) + list(PREPS) + list(RELS) + list(INTRANS) + list(TRANS)
        words += [w for n in NOUNS for w in (n, PLURAL.get(n, n + "s"))]
        words += [*AUX[False], *AUX[True], *SPECIAL]
        self.vocab = words
        self.ids = {w: i for i, w in enumerate(words)}
        self.pad = self.ids["<pad>"]
        self.vocab_size = len(words)
        # declarative + "." + task word + output (+ "?" or ".") less the last token fed
        self.seq_len = 2 * (MAX_WORDS + 1)

    def _example(self, g: _Grammar, quest: bool, rc_subject: bool | None) -> tuple[list[str], int]:
        """One example's words and the index of the task word."""
        s = g.sentence(rc_subject)
        src = s.words + ["."]
        out = s.question() if quest else s.words + ["."]
        return src + ["quest" if quest else "decl"] + out, len(src)

    def encode(self, examples: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets, padded to the longest (padding is not scored)."""
        width = max(len(e) for e in examples) - 1
        x = np.full((len(examples), width), self.pad, dtype=np.int64)
        y = np.full((len(examples), width), IGNORE, dtype=np.int64)
        for i, e in enumerate(examples):
            t = [self.ids[w] for w in e]
            x[i, :len(t) - 1] = t[:-1]
            y[i, :len(t) - 1] = t[1:]
        return torch.from_numpy(x), torch.from_numpy(y)

    def sample(self, rng: np.random.Generator, n: int) -> list[list[str]]:
        """``n`` training examples: declaratives of any sentence; questions of sentences without
        a relative clause on the subject, except a ``disambiguating`` fraction with one."""
        g = _Grammar(rng)
        out = []
        for _ in range(n):
            quest = bool(rng.random() < self.cfg.question_share)
            rc = (bool(rng.random() < self.cfg.disambiguating) if quest else None)
            out.append(self._example(g, quest, rc)[0])
        return out

    def batch(self, index: int, batch_size: int):
        return self.encode(self.sample(rng_for(self.seed, _TRAIN, index), batch_size))

    def eval_batches(self, n: int, batch_size: int) -> Iterator:
        for i in range(n):
            yield self.encode(self.sample(rng_for(self.seed, _EVAL, i), batch_size))

    def questions(self, n: int, rc_subject: bool, seed: int = 0) -> dict:
        """``n`` held-out questions, with the words each rule puts first. ``rc_subject``: of
        sentences with a relative clause on the subject whose auxiliary differs from the main
        one (the rules disagree), or of sentences like the training questions' (they agree).
        Returns ``x``/``y`` (encoded), ``at`` (the position whose prediction is the question's
        first word), ``hierarchical`` and ``linear`` (token ids) and the sentences."""
        g = _Grammar(rng_for(self.seed, _PROBE, seed, int(rc_subject)))
        sents: list[Sentence] = []
        while len(sents) < n:
            s = g.sentence(rc_subject)
            if not rc_subject or s.words[s.first] != s.words[s.main]:
                sents.append(s)
        ex = [s.words + [".", "quest"] + s.question() for s in sents]
        x, y = self.encode(ex)
        return {"x": x, "y": y, "at": np.array([len(s.words) + 1 for s in sents]),
                "hierarchical": np.array([self.ids[s.words[s.main]] for s in sents]),
                "linear": np.array([self.ids[s.words[s.first]] for s in sents]),
                "sentences": [" ".join(s.words) + " ." for s in sents],
                "clause": np.array([clause_kind(s) for s in sents])}

    def first_words(self, pred: np.ndarray, q: dict) -> dict[str, np.ndarray]:
        """Per question, whether the model's first word is each rule's (``[n]`` booleans)."""
        first = pred[np.arange(len(q["at"])), q["at"]]
        return {r: first == q[r] for r in self.rules}

    def exact(self, pred: np.ndarray, q: dict) -> np.ndarray:
        """Per question, whether every word of the question is the model's argmax (then greedy
        decoding writes it whole)."""
        y = q["y"].numpy()
        scored = np.arange(y.shape[1])[None, :] >= q["at"][:, None]
        scored &= y != IGNORE
        return ((pred == y) | ~scored).all(1)

    def token_str(self, ids):
        return [self.vocab[int(i)] for i in ids]

    @torch.no_grad()
    def metrics(self, model, device, n: int = 128) -> dict[str, float]:
        """Exact match of questions like the training ones (``question_acc``), and on questions
        where the rules disagree, the share whose first word each rule gives
        (``follows_hierarchical``, ``follows_linear``): which rule the model is taking as it
        trains."""
        q = self.questions(n, rc_subject=False, seed=10_000)
        pred = model(q["x"].to(device)).argmax(-1).cpu().numpy()
        out = {"question_acc": float(self.exact(pred, q).mean())}
        q = self.questions(n, rc_subject=True, seed=10_000)
        pred = model(q["x"].to(device)).argmax(-1).cpu().numpy()
        for r, hit in self.first_words(pred, q).items():
            out[f"follows_{r}"] = float(hit.mean())
        return out
