"""Tour chapter "Inside the model": the tour GPT's heads with their evidence, MiniLM's taxonomy,
and one question phrased four ways."""

from __future__ import annotations

from pathlib import Path

from lenslab.attention import viewer
from lenslab.attention.capture import load_lens
from lenslab.attention.classes import HeadClass
from lenslab.attention.lab import run_heads
from lenslab.attention.paraphrase import paraphrase_alignments, paraphrase_stability
from lenslab.html import Page, escape, figure_block, figure_to_svg, fmt, table_html
from lenslab.interventions import paraphrase_causal
from lenslab.result import write_result

PARAPHRASE_GROUP = [
    "What is the capital city of France?",
    "Which city is the capital of France?",
    "France's capital city is which one?",
    "Name the capital of France.",
]


def chapter(out: Path, page: Page, quick: bool) -> str:
    """Needs the training chapter's run (``out/runs/induction``)."""
    page.include(*viewer.assets())
    run = out / "runs" / "induction"
    rep = run_heads(str(run), progress=False, command=f"lenslab heads {run} --out {run / 'analysis'}")
    parts = ["<h3>The tour's GPT</h3><p>" + escape(_finding(rep)) + "</p>" + rep.taxonomy_html()]
    if rep.importance:
        parts.append(figure_block(figure_to_svg(rep.importance_figure()), "Structure against "
                                  "importance (rise of the loss on repeated random tokens when "
                                  "the head is zeroed)."))
    parts.append(rep.viewer_html(title="Attention of the tour's GPT"))
    if quick:  # the pretrained model's taxonomy and paraphrases take most of this chapter
        parts.append("<div class='note'>The MiniLM taxonomy and the paraphrase comparison run "
                     "in the full tour (<code>lenslab tour</code>, without --quick).</div>")
        return "".join(parts)
    try:
        minilm = load_lens("minilm")
    except Exception as e:  # noqa: BLE001 - the package is optional for users; say what is missing
        parts.append(f"<div class='note'>MiniLM section skipped: {escape(e)}</div>")
        return "".join(parts)
    mdir = out / "minilm"
    mrep = run_heads(minilm, mdir, progress=False, command=f"lenslab heads minilm --out {mdir}")
    counts = sorted(mrep.counts().items(), key=lambda kv: -kv[1])
    parts.append(
        "<h3>all-MiniLM-L6-v2 (pretrained, 6 layers x 12 heads)</h3>"
        "<p>The same battery and nulls on a real pretrained model. "
        + escape(", ".join(f"{c.value}: {n}" for c, n in counts))
        + ". Many heads park their attention on [CLS] (sink heads: a no-op when there is nothing "
        "to attend to), layer 0 holds most of the broad heads, and a few heads are sharply "
        "structured (previous-token, duplicate-token, next-token).</p>"
        + figure_block(figure_to_svg(mrep.grid_figure()))
        + "<details><summary>all 72 heads with evidence</summary>"
        + table_html(mrep.table_rows(), digits=3) + "</details>")
    pres = paraphrase_stability(minilm, [PARAPHRASE_GROUP], head_info=mrep.heads,
                                n_boot=200 if quick else 1000, top=3)
    # the causal column: do the heads whose pattern changes move the output? (a few seconds)
    pres.causal = paraphrase_causal(minilm, pres,
                                    paraphrase_alignments(minilm, pres, [PARAPHRASE_GROUP]))
    write_result(pres, mdir, "lenslab paraphrase minilm GROUP --out " + str(mdir), png=False)
    parts.append("<h3>The same question, phrased four ways</h3><p>"
                 + " / ".join(escape(s) for s in PARAPHRASE_GROUP) + "</p>" + pres.fragment(level=4))
    return "".join(parts)


def _finding(rep) -> str:
    ind = [h for h in rep.heads if h["class"] is HeadClass.INDUCTION]
    prev = [h for h in rep.heads if h["class"] is HeadClass.PREVIOUS_TOKEN]
    best = max(rep.heads, key=lambda h: h["scores"]["induction"])
    bn = best["null"]["induction"]
    name = f"L{best['layer']}H{best['head']}"
    if not ind:
        return ("The model trained in the first chapter has no induction head yet: its best "
                f"prefix-matching score is {fmt(best['scores']['induction'], 2)} ({name}), under "
                f"the threshold {fmt(bn['threshold'], 2)} set by its nulls. (Short training, "
                "e.g. `--quick`, stops before the phase change.)")
    circuit = (" This is the two-layer induction circuit of Olsson et al. 2022: a layer-0 head "
               "copies the previous token into each position, a layer-1 head matches on it."
               if any(h["layer"] == 0 for h in prev) and all(h["layer"] >= 1 for h in ind) else "")
    return (f"The model trained in the first chapter has {len(prev)} previous-token head(s) and "
            f"{len(ind)} induction head(s). The best, {name}, puts "
            f"{fmt(best['scores']['induction'], 2)} of its attention on the token after the "
            f"previous occurrence of the current token, against a threshold of "
            f"{fmt(bn['threshold'], 2)} from its nulls (re-initialised weights, 99th percentile "
            f"{fmt(bn['reinit_hi'], 3)}; its own attention with shuffled keys, "
            f"{fmt(bn['perm_hi'], 3)})." + circuit)
