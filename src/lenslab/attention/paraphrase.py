"""Paraphrase stability: does a head attend the same way when a question is asked in other words?

Input: groups of phrasings of the same question (a file, one phrasing per line, blank lines
between groups; see :func:`read_groups`). For every phrasing:

1. **Words.** A word is a maximal run of word characters (``\\w+``) in the text, normalized by
   NFKC and lowercasing; punctuation is dropped. Tokens are aligned to words through their
   character offsets (a token belongs to the word it overlaps most; special tokens and punctuation
   belong to none). See :func:`align_words`.
2. **Word-to-word attention.** Token attention ``[head, q, k]`` becomes word attention
   ``[head, word_q, word_k]``: *sum* over the key tokens of a word, *mean* over the query tokens of
   a word. Repeated words are one word (their tokens pooled), so words can be matched by form.
   Patterns are streamed one layer at a time (``capture(on_layer=...)``); only the small word
   matrices and a head profile are kept.
3. **Head profile** per head (all in [0, 1]): normalized entropy (mean over queries of
   ``H(row) / log(visible keys)``), mean relative offset (``sum_k w (k - q) / (T - 1)``, mapped
   from [-1, 1] to [0, 1]), first-token share (sink / ``[CLS]``), share on other special tokens
   (``[SEP]``), share on non-word tokens (punctuation).

For two phrasings ``a``, ``b`` and each head:

* **attention similarity**: restrict both word matrices to the words they share (rows and
  columns), renormalize each row to sum 1, and take the Pearson correlation of the two flattened
  matrices (rows with no attention on shared words are left out). In [-1, 1]; 1 for identical
  phrasings. Pairs sharing fewer than ``min_shared`` words are skipped (and listed).
* **profile similarity**: ``1 - mean |profile_a - profile_b|`` over the five features, in [0, 1].

**Null**: the same measures on unrelated sentence pairs of similar length: each phrasing of a
pair is matched with sentences from the *other* groups (or, with only one group, from a built-in
set of natural sentences) that share at least ``min_shared`` words with it and are closest in token
length to its partner. **Stability** of a head = mean attention similarity over paraphrase pairs,
with a percentile bootstrap interval over pairs; its gap to the null mean has an interval from
independent bootstrap of both. The most phrasing-sensitive heads are those with the lowest
stability among heads that put at least ``min_word_mass`` of their attention on shared words
(a head that looks almost only at ``[CLS]``/``[SEP]`` has no word pattern to compare); each is
shown side by side on the group where it changed most.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from bisect import bisect_right
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np
from rich.progress import Progress

from lenslab._io import read_user_text
from lenslab.attention.paraphrase_result import (
    PROFILE_FEATURES,
    ParaphraseResult,
    taxonomy_labels,
)
from lenslab.attention.viewer import ViewerInput, capture_quantized, encode_input
from lenslab.errors import DataError

WORD_RE = re.compile(r"\w+")
# Unrelated natural sentences for the null when only one group is given. Written for lenslab:
# everyday statements and questions of 6 to 25 words that use common function words, so most
# user sentences share at least two words with several of them.
BUILTIN_SENTENCES = (
    "What is the best way to keep bread fresh for a week?",
    "The train to the city leaves at seven in the morning.",
    "How do you say thank you in the language of Japan?",
    "She left the keys on the table next to the door.",
    "Is it true that the moon has no air at all?",
    "My brother is learning to play the piano this year.",
    "Where is the nearest place to buy a cup of coffee?",
    "The children built a small house out of old boxes.",
    "Why does the sky turn red when the sun goes down?",
    "We will meet at the library after the lecture is over.",
    "Can you tell me what time the museum opens on Sunday?",
    "A strong wind knocked over the fence in the garden.",
    "The recipe asks for two eggs and a spoon of sugar.",
    "Which of these roads is the fastest way to the coast?",
    "He forgot to water the plants while they were on holiday.",
    "It is the job of the heart to pump blood through the body.",
    "Who wrote the letter that was found in the old desk?",
    "The price of the tickets went up again this summer.",
    "How many people live in the largest city of the country?",
    "They painted the walls of the kitchen a pale shade of green.",
    "The river rises every spring when the snow in the mountains melts.",
    "What do you need to bring to the meeting on Friday?",
    "Our team lost the match because of a late goal.",
    "Is there a quiet room in the building where I can work?",
    "The old dog sleeps in the sun for most of the afternoon.",
    "Please send me the report by the end of the day.",
    "What is the name of the tallest mountain in the world?",
    "The bakery on the corner sells the best bread in town.",
    "Most birds in the north fly south before the winter starts.",
    "Do you know how long it takes to boil an egg?",
    "The film was so long that half of the audience fell asleep.",
    "A small boat was tied to the end of the wooden pier.",
    "How does a plant turn light from the sun into food?",
    "The students asked the teacher to explain the question again.",
    "There is a map of the city on the wall of the station.",
    "When did people first learn to make fire for cooking?",
    "I lost my umbrella on the bus on the way to work.",
    "The new bridge over the river will open next month.",
    "What is the difference between a lake and a pond?",
    "The farmer sold the apples at the market in the village.",
)


# ---------------------------------------------------------------------------- input


def _check_groups(groups: Any) -> list[list[str]]:
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence):
        raise DataError("give groups as a list of lists of phrasings, or a file path")
    out: list[list[str]] = []
    for g, grp in enumerate(groups, 1):
        if isinstance(grp, str) or not isinstance(grp, Sequence):
            raise DataError(f"group {g} must be a list of phrasings, not {type(grp).__name__}")
        phr = [str(p).strip() for p in grp]
        if any(not p for p in phr):
            raise DataError(f"group {g} has an empty phrasing; every phrasing needs words")
        if len(phr) < 2:
            raise DataError(f"group {g} has {len(phr)} phrasing(s); a group needs at least two "
                            "phrasings of the same question to compare")
        out.append(phr)
    if not out:
        raise DataError("no phrasings given; a group needs at least two phrasings")
    return out


def read_groups(path: Union[str, Path]) -> list[list[str]]:
    """Read a paraphrase file: UTF-8, one phrasing per line, blank lines between groups.

    Runs of blank lines count as one separator. Raises :class:`DataError` (one line) when the file
    is missing, is not UTF-8, holds no phrasings, or has a group with fewer than two phrasings.
    """
    p = Path(path)
    text = read_user_text(p, "paraphrase file (one phrasing per line)")
    groups: list[list[str]] = []
    current: list[str] = []
    starts: list[int] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line:
            if current:
                groups.append(current)
                current = []
            continue
        if not current:
            starts.append(lineno)
        current.append(line)
    if current:
        groups.append(current)
    if not groups:
        raise DataError(f"{p} holds no phrasings; write one phrasing per line, blank lines "
                        "between groups")
    for g, (grp, line) in enumerate(zip(groups, starts), 1):
        if len(grp) < 2:
            raise DataError(f"{p}: group {g} (line {line}) has only one phrasing; a group needs "
                            "at least two phrasings of the same question")
    return groups


# ---------------------------------------------------------------------------- words


def normalize_word(word: str) -> str:
    """The form words are matched by: NFKC, lowercased, NFKC again (lowercasing can denormalize)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", word).lower())


@dataclass
class WordAlignment:
    """Words of a text and which word each token belongs to.

    ``forms``: distinct normalized word forms in order of first appearance; ``token_form``:
    ``[T]`` index into ``forms`` per token, -1 for special tokens and punctuation; ``words``:
    every word occurrence as ``(start, end, form)`` character spans.
    """

    forms: list[str]
    token_form: np.ndarray  # [T] int
    words: list[tuple[int, int, str]]


def align_words(text: str, offsets: Sequence[Optional[tuple[int, int]]]) -> WordAlignment:
    """Align tokens to words through character offsets (see module doc)."""
    words = [(m.start(), m.end(), normalize_word(m.group())) for m in WORD_RE.finditer(text)]
    forms: list[str] = []
    index: dict[str, int] = {}
    for _, _, f in words:
        if f not in index:
            index[f] = len(forms)
            forms.append(f)
    starts = [w[0] for w in words]
    token_form = np.full(len(offsets), -1, dtype=np.int64)
    for t, off in enumerate(offsets):
        if off is None:
            continue
        a, b = int(off[0]), int(off[1])
        if b <= a:
            continue
        best, best_overlap = -1, 0
        i = max(bisect_right(starts, a) - 1, 0)
        while i < len(words) and words[i][0] < b:
            overlap = min(b, words[i][1]) - max(a, words[i][0])
            if overlap > best_overlap:
                best, best_overlap = index[words[i][2]], overlap
            i += 1
        token_form[t] = best
    return WordAlignment(forms, token_form, words)


# ---------------------------------------------------------------------------- per sentence


@dataclass
class SentenceStats:
    """What the analysis keeps of one captured sentence.

    ``word_att``: ``[layer, head, F, F]`` word-to-word attention (query word mean, key word sum);
    ``profile``: ``[layer, head, 5]`` head profile (see :data:`PROFILE_FEATURES`).
    """

    text: str
    n_tokens: int
    forms: list[str]
    word_att: np.ndarray
    profile: np.ndarray
    truncated: bool = False


def analyze_sentence(lens: Any, text: str, truncate: bool = False) -> SentenceStats:
    """Tokenize and capture ``text``, streaming layers into word attention and head profiles."""
    toks = lens.tokenize(text, truncate=truncate)
    al = align_words(toks.text, toks.offsets)
    T, F = len(toks), len(al.forms)
    if F == 0:
        raise DataError(f"{text[:60]!r} has no words (only punctuation or symbols)")
    tf = al.token_form
    in_word = tf >= 0
    mk = np.zeros((F, T))
    mk[tf[in_word], np.nonzero(in_word)[0]] = 1.0  # [F, T] key: sum over a word's tokens
    mq = mk / mk.sum(1, keepdims=True)  # [F, T] query: mean over a word's tokens
    special = np.array(toks.special if toks.special else [False] * T, dtype=bool)
    pos = np.arange(T)
    other_special = (special & (pos != 0)).astype(float)  # [T]
    non_word = (~special & ~in_word & (pos != 0)).astype(float)  # [T] punctuation etc.
    n_vis = pos + 1 if lens.causal else np.full(T, T)  # keys each query can see
    rel = (pos[None, :] - pos[:, None]) / max(T - 1, 1)  # [q, k] relative offset
    L, H = lens.n_layer, lens.n_head
    word_att = np.zeros((L, H, F, F), dtype=np.float32)
    profile = np.zeros((L, H, len(PROFILE_FEATURES)), dtype=np.float32)
    rows = n_vis > 1
    log_vis = np.log(np.maximum(n_vis, 2))

    def on_layer(layer: int, p: Any) -> None:  # p [batch=1, head, q, k]
        w = p[0].double().cpu().numpy()  # [H, T, T]
        word_att[layer] = np.einsum("ft,htk,gk->hfg", mq, w, mk)
        ent = -(w * np.log(np.where(w > 0, w, 1.0))).sum(-1) / log_vis  # [H, T]
        profile[layer, :, 0] = ent[:, rows].mean(-1) if rows.any() else 0.0
        profile[layer, :, 1] = ((w * rel).sum(-1).mean(-1) + 1.0) / 2.0
        profile[layer, :, 2] = w[:, :, 0].mean(-1)
        profile[layer, :, 3] = (w @ other_special).mean(-1)
        profile[layer, :, 4] = (w @ non_word).mean(-1)

    lens.capture(toks.tensor(), on_layer=on_layer)
    return SentenceStats(text, T, al.forms, word_att, profile, toks.truncated)


# ---------------------------------------------------------------------------- similarity


def shared_forms(a: SentenceStats, b: SentenceStats) -> list[str]:
    """Word forms present in both, in ``a``'s order."""
    bs = set(b.forms)
    return [f for f in a.forms if f in bs]


def attention_similarity(a: SentenceStats, b: SentenceStats, shared: Sequence[str]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Per-head similarity of word-to-word attention on ``shared`` words.

    Returns ``(r, mass)``, both ``[layer, head]``: ``r`` the Pearson correlation of the
    row-renormalized ``[S, S]`` matrices (NaN where no row has attention on shared words in both;
    1 where both are constant and equal, 0 where only one is constant), ``mass`` the mean share of
    a query word's attention that falls on shared words (mean of both phrasings).
    """
    ia = [a.forms.index(f) for f in shared]
    ib = [b.forms.index(f) for f in shared]
    xa = a.word_att[:, :, ia][:, :, :, ia].astype(np.float64)  # [L, H, S, S]
    xb = b.word_att[:, :, ib][:, :, :, ib].astype(np.float64)
    ma, mb = xa.sum(-1), xb.sum(-1)  # [L, H, S] row mass on shared words
    valid = (ma > 1e-9) & (mb > 1e-9)
    xa = np.where(valid[..., None], xa / np.where(valid, ma, 1.0)[..., None], 0.0)
    xb = np.where(valid[..., None], xb / np.where(valid, mb, 1.0)[..., None], 0.0)
    w = np.broadcast_to(valid[..., None], xa.shape).astype(np.float64)
    n = w.sum((-2, -1))  # [L, H]
    with np.errstate(invalid="ignore", divide="ignore"):
        mxa = (w * xa).sum((-2, -1)) / n
        mxb = (w * xb).sum((-2, -1)) / n
        da = (xa - mxa[..., None, None]) * w
        db = (xb - mxb[..., None, None]) * w
        va, vb = (da * da).sum((-2, -1)), (db * db).sum((-2, -1))
        r = (da * db).sum((-2, -1)) / np.sqrt(va * vb)
    tiny = 1e-12
    flat_a, flat_b = va <= tiny, vb <= tiny
    same = np.abs((xa - xb) * w).max((-2, -1)) <= 1e-6
    r = np.where(flat_a & flat_b, np.where(same, 1.0, 0.0), r)
    r = np.where(flat_a ^ flat_b, 0.0, r)
    r = np.where(n > 0, np.clip(r, -1.0, 1.0), np.nan)
    mass = (ma.mean(-1) + mb.mean(-1)) / 2.0
    return r, mass


def profile_similarity(a: SentenceStats, b: SentenceStats) -> np.ndarray:
    """``1 - mean |profile_a - profile_b|`` per head, ``[layer, head]`` in [0, 1]."""
    return 1.0 - np.abs(a.profile.astype(np.float64) - b.profile).mean(-1)


# ---------------------------------------------------------------------------- bootstrap


def _boot_means(vals: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means over axis 0 ignoring NaN: ``vals [P, ...] -> [n_boot, ...]``."""
    P = vals.shape[0]
    flat = vals.reshape(P, -1)
    ok = np.isfinite(flat)
    counts = rng.multinomial(P, np.full(P, 1.0 / P), size=n_boot).astype(np.float64)  # [B, P]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (counts @ np.where(ok, flat, 0.0)) / (counts @ ok.astype(np.float64))
    return out.reshape((n_boot,) + vals.shape[1:])


def _interval(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    a = (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN heads give NaN
        return np.nanquantile(boot, a, axis=0), np.nanquantile(boot, 1.0 - a, axis=0)


def _nanmean0(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=0)


# ---------------------------------------------------------------------------- main


def paraphrase_stability(
    lens: Any,
    groups: Union[str, Path, Sequence[Sequence[str]]],
    *,
    truncate: bool = False,
    min_shared: int = 2,
    null_per_pair: int = 2,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    top: int = 5,
    min_word_mass: float = 0.1,
    head_info: Any = None,
    views: bool = True,
    progress: bool = False,
) -> ParaphraseResult:
    """Measure per-head paraphrase stability of ``lens`` (a :class:`LensModel`).

    ``groups``: a file path (see :func:`read_groups`) or a list of groups of phrasings.
    ``head_info``: optional head taxonomy (``heads.json``) whose classes the views show.
    ``views``: build the side-by-side viewer fragments (re-captures the groups they need).
    """
    if isinstance(groups, (str, Path)):
        groups = read_groups(groups)
    groups = _check_groups(groups)
    if min_shared < 2:
        raise DataError("min_shared must be at least 2 (one shared word has no pattern to compare)")
    rng = np.random.default_rng(seed)
    L, H = lens.n_layer, lens.n_head

    def analyze(t: str, where: str, bar: Callable[[int], None]) -> SentenceStats:
        try:
            s = analyze_sentence(lens, t, truncate=truncate)
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
        bar(1)
        return s

    with _progress(progress, sum(len(grp) for grp in groups)) as bar:
        stats = [[analyze(t, f"group {g + 1}, phrasing {i + 1}", bar) for i, t in enumerate(grp)]
                 for g, grp in enumerate(groups)]
    notes: list[str] = []
    if any(s.truncated for grp in stats for s in grp):
        notes.append(f"some phrasings were truncated to the model's context of {lens.n_ctx} tokens")

    # ---- paraphrase pairs
    pairs: list[dict] = []
    att, prof, mass, pgroup = [], [], [], []
    for g, grp in enumerate(stats):
        for i in range(len(grp)):
            for j in range(i + 1, len(grp)):
                sh = shared_forms(grp[i], grp[j])
                used = len(sh) >= min_shared
                pairs.append({"group": g, "a": i, "b": j, "shared": sh, "used": used})
                if used:
                    r, m = attention_similarity(grp[i], grp[j], sh)
                    att.append(r)
                    mass.append(m)
                    prof.append(profile_similarity(grp[i], grp[j]))
                    pgroup.append(g)
    skipped = [p for p in pairs if not p["used"]]
    if not att:
        raise DataError(f"no two phrasings of a group share at least {min_shared} words; "
                        "paraphrases must have words in common to compare attention")
    if skipped:
        notes.append(f"{len(skipped)} of {len(pairs)} pairs share fewer than {min_shared} words "
                     "and are not compared")

    # ---- null: unrelated pairs of similar length
    builtin: list[SentenceStats] = []

    def builtin_pool() -> list[SentenceStats]:
        if not builtin:
            builtin.extend(analyze_sentence(lens, t, truncate=True) for t in BUILTIN_SENTENCES)
        return builtin

    null_keys: set = set()
    null_pairs: list[dict] = []
    natt, nprof = [], []
    def nearest(a: SentenceStats, partner: SentenceStats, pool: list[SentenceStats]
                ) -> list[SentenceStats]:
        """Up to ``null_per_pair`` sentences sharing ``min_shared`` words with ``a``, closest in
        token length to ``partner`` (ties broken at random)."""
        cands = [c for c in pool if len(shared_forms(a, c)) >= min_shared]
        tie = rng.random(len(cands))
        order = sorted(range(len(cands)),
                       key=lambda k: (abs(cands[k].n_tokens - partner.n_tokens), tie[k]))
        return [cands[k] for k in order[:null_per_pair]]

    for p in (p for p in pairs if p["used"]):
        grp = stats[p["group"]]
        others = [s for g2, gg in enumerate(stats) if g2 != p["group"] for s in gg]
        for a, partner in ((grp[p["a"]], grp[p["b"]]), (grp[p["b"]], grp[p["a"]])):
            source, found = "other groups", nearest(a, partner, others)
            if not found:  # one group only, or no other group shares enough words
                source, found = "built-in sentences", nearest(a, partner, builtin_pool())
            for c in found:
                key = (a.text, c.text)  # repeated phrasings give one null pair, not several
                if key in null_keys:
                    continue
                null_keys.add(key)
                r, _ = attention_similarity(a, c, shared_forms(a, c))
                natt.append(r)
                nprof.append(profile_similarity(a, c))
                null_pairs.append({"a": a.text, "b": c.text, "source": source})
    nan = np.full((L, H), np.nan)
    if len(stats) > 1 and any(p["source"] == "built-in sentences" for p in null_pairs):
        notes.append(f"some phrasings share fewer than {min_shared} words with every sentence of "
                     "the other groups; their null pairs use built-in sentences")
    if not natt:
        notes.append(f"no unrelated sentence shares {min_shared} words with the phrasings: "
                     "there is no null baseline")

    # ---- aggregate with bootstrap intervals
    att_a, prof_a, mass_a = np.stack(att), np.stack(prof), np.stack(mass)  # [P, L, H]
    b_att = _boot_means(att_a, n_boot, rng)
    b_prof = _boot_means(prof_a, n_boot, rng)
    stability, profile = _nanmean0(att_a), _nanmean0(prof_a)
    if natt:
        natt_a, nprof_a = np.stack(natt), np.stack(nprof)
        b_null = _boot_means(natt_a, n_boot, rng)
        null, null_profile = _nanmean0(natt_a), _nanmean0(nprof_a)
        null_ci = np.stack(_interval(b_null, ci))
        gap_ci = np.stack(_interval(b_att - b_null, ci))
    else:
        null, null_profile = nan.copy(), nan.copy()
        null_ci, gap_ci = np.stack([nan, nan]), np.stack([nan, nan])
    per_group = np.full((len(groups), L, H), np.nan)
    pg = np.array(pgroup)
    for g in range(len(groups)):
        if (pg == g).any():
            per_group[g] = _nanmean0(att_a[pg == g])

    word_mass = mass_a.mean(0)
    eligible = [(layer, h) for layer in range(L) for h in range(H)
                if word_mass[layer, h] >= min_word_mass and np.isfinite(stability[layer, h])]
    if len(eligible) < L * H:
        notes.append(f"{L * H - len(eligible)} heads put less than {min_word_mass:.0%} of their "
                     "attention on shared words (sinks, delimiters) and are not ranked")
    ranked = sorted(eligible, key=lambda x: (stability[x], -np.nan_to_num(null[x])))
    sensitive = ranked[:max(top, 0)]

    phrasings = [[{"text": st.text, "n_tokens": st.n_tokens, "words": st.forms,
                   "truncated": st.truncated} for st in grp] for grp in stats]
    res = ParaphraseResult(
        model=lens.name, n_layer=L, n_head=H, phrasings=phrasings, pairs=pairs,
        null_pairs=null_pairs,
        stability=stability, stability_ci=np.stack(_interval(b_att, ci)),
        profile=profile, profile_ci=np.stack(_interval(b_prof, ci)),
        null=null, null_ci=null_ci, null_profile=null_profile,
        gap=stability - null, gap_ci=gap_ci, word_mass=word_mass, per_group=per_group,
        sensitive=sensitive,
        settings={"min_shared": min_shared, "null_per_pair": null_per_pair, "n_boot": n_boot,
                  "ci": ci, "seed": seed, "top": top, "min_word_mass": min_word_mass,
                  "truncate": truncate},
        notes=notes,
        taxonomy=taxonomy_labels(head_info) if head_info is not None else {},
    )
    if views:
        needed = {res.worst_group(layer, h) for layer, h in res.sensitive}
        needed.add(res.worst_group(*res.sensitive[0]) if res.sensitive else 0)
        for g in sorted(needed):
            res.captures[g] = [capture_input(lens, f"{i + 1}. {t}", t, truncate)
                               for i, t in enumerate(groups[g])]
    return res


def aligned_tokens(lens: Any, a: str, b: str, truncate: bool = False):
    """Token ids of phrasings ``a`` and ``b`` (``[T_a]``, ``[T_b]``) and their aligned positions
    (``pos_a[i]`` matches ``pos_b[i]``): every word the two share, by form, matched token by
    token, occurrences in order, where the word has as many tokens in both (otherwise its tokens
    have no one-to-one match and the word is left out)."""
    import torch

    ta, tb = lens.tokenize(a, truncate=truncate), lens.tokenize(b, truncate=truncate)
    fa, fb = align_words(ta.text, ta.offsets), align_words(tb.text, tb.offsets)
    pa, pb = [], []
    for form in set(fa.forms) & set(fb.forms):
        xa = np.nonzero(fa.token_form == fa.forms.index(form))[0]
        xb = np.nonzero(fb.token_form == fb.forms.index(form))[0]
        if len(xa) == len(xb):
            pa.extend(xa.tolist()), pb.extend(xb.tolist())
    order = np.argsort(pb, kind="stable")
    return (ta.tensor()[0], tb.tensor()[0], torch.tensor(np.array(pa, dtype=np.int64)[order]),
            torch.tensor(np.array(pb, dtype=np.int64)[order]))


def paraphrase_alignments(lens: Any, res: ParaphraseResult, groups: Union[str, Path, Sequence[Sequence[str]]],
                          truncate: bool = False) -> list[tuple]:
    """For each compared paraphrase pair of ``res``, in both directions, :func:`aligned_tokens`
    ``(src, dst, src_pos, dst_pos)``: what the interventions lab's ``aligned_patching`` reads to
    give the result its causal column (``res.causal``)."""
    if isinstance(groups, (str, Path)):
        groups = read_groups(groups)
    out = []
    for p in res.pairs:
        if not p["used"]:
            continue
        a, b = groups[p["group"]][p["a"]], groups[p["group"]][p["b"]]
        for src, dst in ((a, b), (b, a)):
            item = aligned_tokens(lens, src, dst, truncate)
            if len(item[2]):
                out.append(item)
    return out


def capture_input(lens: Any, title: str, text: str, truncate: bool) -> dict:
    """One phrasing's attention as a stored viewer input (quantized, streamed by layer)."""
    toks, q = capture_quantized(lens, text, truncate=truncate)
    return encode_input(ViewerInput(title, list(toks.strings), q, list(toks.special)))


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar (transient; stopped even when an error escapes), or a no-op."""
    if not enabled:
        yield lambda n: None
        return
    with Progress(transient=True) as prog:
        task = prog.add_task("capturing phrasings", total=total)
        yield lambda n: prog.advance(task, n)
