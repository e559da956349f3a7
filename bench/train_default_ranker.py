"""Train and validate the bundled default ranker (a linear model over linguistic-form features) from ../shared/data.

Training and validation use instruction-matched pairs only: two responses to the same
instruction, the LLM's ranked above the human's (SCAR's margin ranking, as a logistic
regression on the difference of the two responses' standardised features).

- LLM answers to the human-answered instructions of LIMA, OASST and the SCAR human set come from
  the offline SmolLM2-135M-Instruct (`bench/synth_ranker_answers.py`, the data step; --generate runs
  it first, and it resumes where it stopped). Answers that loop are dropped (quality constraint).
- The SCAR GPT-3.5 mix answers 88 of the SCAR human set's instructions: a second generator.
- AlpacaEval's generators on the same 805 instructions give LLM-over-LLM pairs of known strength
  order. Their instructions are split in two by a hash: --quality-pairs trains on one half's
  stronger-over-weaker pairs, the other half is only ever a held-out check.
- Six OASST prompts are also AlpacaEval instructions: its ten generators' answers over the
  volunteers' replies (180 pairs) check, with OASST held out, how the ranker does on strong LLMs
  that gave none of its human-versus-LLM training pairs. They never train, and their
  instructions are kept out of the quality pairs.

Validation holds out whole human sources: train on the pairs of the other sources, rank the
held-out source's pairs, and beside each figure rank the same pairs by length alone and by a
code/not-code rule. The L2 penalty is chosen inside the training sources (leave one out) only.

    python bench/train_default_ranker.py --data ../shared/data --answers bench/out/ranker_answers.jsonl \\
        --generate -o src/sftselect/data/rankers/scar-style-features

rebuilds the answers, prints every figure, and writes the ranker with its training_report.json.
--surprisal adds SmolLM2 loss features (SCAR's instructional surprisal, cached in --lm-cache) to the
comparison; --final-features "form + surprisal" then writes a ranker that uses them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from sftselect.io.atomic import atomic_path
from sftselect.records import Record, Turn
from sftselect.models.style_features import (
    FORM_FEATURES,
    SURPRISAL_FEATURES,
    SURPRISAL_LM_SETTINGS,
    form_features,
    surprisal_features,
)
from sftselect.training.style_ranker import (
    MatchedPair,
    alpaca_eval_pairs,
    code_rule_accuracy,
    fit_style_ranker,
    instruction_interval,
    length_rule_accuracy,
    oasst_alpaca_eval_pairs,
    oasst_top_replies,
    pair_outcomes,
    ranker_accuracy,
    scar_gpt35_pairs,
    synth_answer_pairs,
)

HUMAN_SOURCES = ("lima", "oasst", "scar_human")
L2_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
# AlpacaEval generators in their known strength order (leaderboard win rates), strongest first.
STRENGTH_ORDER = ("gpt4_1106_preview", "gpt4", "claude", "Meta-Llama-3-8B-Instruct", "text_davinci_003", "alpaca-7b")
# The feature sets compared; "surprisal ratios" keeps only the LM features that are relative to the response's own loss.
VARIANTS = {
    "form": list(FORM_FEATURES),
    "form + surprisal": list(FORM_FEATURES) + list(SURPRISAL_FEATURES),
    "form + surprisal ratios": list(FORM_FEATURES) + ["lm_instruction_gain", "lm_ifd"],
}
QUALITY_TRAINING = (("gpt4_1106_preview", "alpaca-7b"), ("claude", "text_davinci_003"))


class Texts:
    """Every distinct response text with its feature row, so each text is measured once."""

    def __init__(self, pairs: list[MatchedPair], surprisal: dict[tuple[str, str], np.ndarray] | None):
        keys = list(dict.fromkeys((pair.instruction, text) for pair in pairs for text in (pair.better, pair.worse)))
        self.row = {key: index for index, key in enumerate(keys)}
        self.names = list(FORM_FEATURES)
        self.matrix = form_features([text for _, text in keys])
        if surprisal is not None:
            self.names += list(SURPRISAL_FEATURES)
            self.matrix = np.hstack([self.matrix, surprisal_features(np.stack([surprisal[key] for key in keys]))])

    def matrices(self, pairs: list[MatchedPair], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        columns = [self.names.index(name) for name in names]
        better = [self.row[(pair.instruction, pair.better)] for pair in pairs]
        worse = [self.row[(pair.instruction, pair.worse)] for pair in pairs]
        return self.matrix[better][:, columns], self.matrix[worse][:, columns]


def lm_losses(pairs: list[MatchedPair], cache_path: Path, model: str | None) -> dict[tuple[str, str], np.ndarray]:
    """The LM's summed losses of each response (first 64 tokens) given its instruction and alone, cached on disk."""
    from sftselect.models.response_losses import ResponseLosses

    keys = list(dict.fromkeys((pair.instruction, text) for pair in pairs for text in (pair.better, pair.worse)))
    lm = {"model": model, **SURPRISAL_LM_SETTINGS}
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {"lm": lm, "losses": {}}
    if cache.get("lm") != lm:
        sys.exit(f"{cache_path} holds losses of another LM ({cache.get('lm')}); give another --lm-cache")
    cached: dict[str, list[float]] = cache["losses"]
    missing = [key for key in keys if json.dumps(key) not in cached]
    if missing:
        print(f"LM losses: {len(missing)} of {len(keys)} responses not in {cache_path}", flush=True)
        scorer = ResponseLosses(model, **SURPRISAL_LM_SETTINGS, batch_tokens=4096)
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(missing), 64):
            chunk = missing[start : start + 64]
            for key, losses in zip(chunk, scorer.pair_losses(chunk)):
                cached[json.dumps(key)] = [float(value) for value in losses]
            with atomic_path(cache_path) as staging:
                staging.write_text(json.dumps(cache))
    return {key: np.array(cached[json.dumps(key)]) for key in keys}


def in_check_half(instruction: str) -> bool:
    """AlpacaEval instructions split in two by a hash: one half may train (--quality-pairs), the other only checks."""
    return int(hashlib.sha256(instruction.strip().encode("utf-8")).hexdigest(), 16) % 2 == 1


def train(texts: Texts, pairs: list[MatchedPair], names: list[str], l2: float | None = None, details: dict | None = None,
          quality_weight: float = 1.0):
    """The ranker fit on `pairs`, each (source, generator) group weighing the same (AlpacaEval quality groups
    `quality_weight` times as much); L2 chosen inside them unless given."""
    l2 = choose_l2(texts, pairs, names, quality_weight) if l2 is None else l2
    groups = [f"{pair.source} / {pair.generator}" for pair in pairs]
    weights = {group: quality_weight for group, pair in zip(groups, pairs) if pair.source == "alpaca_eval"}
    return fit_style_ranker(*texts.matrices(pairs, names), names, l2, groups=groups, details={**(details or {}), "l2": l2},
                            group_weights=weights)


def choose_l2(texts: Texts, training: list[MatchedPair], names: list[str], quality_weight: float = 1.0) -> float:
    """The L2 penalty with the best mean accuracy when each training source is held out from the others in turn."""
    sources = sorted({pair.source for pair in training if pair.source in HUMAN_SOURCES})
    if len(sources) < 2:
        return 1.0
    scores = []
    for l2 in L2_GRID:
        accuracies = []
        for held in sources:
            fit = [pair for pair in training if pair.source != held]
            test = [pair for pair in training if pair.source == held]
            ranker = train(texts, fit, names, l2, quality_weight=quality_weight)
            accuracies.append(ranker_accuracy(ranker, *texts.matrices(test, names)))
        scores.append(float(np.mean(accuracies)))
    return L2_GRID[int(np.argmax(scores))]


def evaluation_rows(texts: Texts, groups: dict[str, list[MatchedPair]], ranker, names: list[str]) -> list[dict]:
    rows = []
    for name, pairs in groups.items():
        if pairs:
            better, worse = texts.matrices(pairs, names)
            outcomes = pair_outcomes(ranker.score_features(better), ranker.score_features(worse))
            low, high = instruction_interval(outcomes, [pair.instruction for pair in pairs])
            rows.append({
                "pairs": name,
                "count": len(pairs),
                "instructions": len({pair.instruction for pair in pairs}),
                "ranker": round(float(np.mean(outcomes)), 3),
                "ranker_95": [round(low, 3), round(high, 3)],
                "length_rule": round(length_rule_accuracy(pairs), 3),
                "code_rule": round(code_rule_accuracy(pairs), 3),
            })
    return rows


def leave_sources_out(texts: Texts, synth: list[MatchedPair], gpt35: list[MatchedPair], quality: list[MatchedPair],
                      strong: list[MatchedPair], checks: dict[str, list[MatchedPair]], names: list[str],
                      quality_weight: float = 1.0) -> list[dict]:
    """Per held-out human source: the ranker trained without it, on its SmolLM2 (and GPT-3.5, or AlpacaEval's ten
    generators: `strong`) pairs and on the AlpacaEval checks."""
    results = []
    for held in HUMAN_SOURCES:
        training = [pair for pair in synth + gpt35 if pair.source != held] + quality
        ranker = train(texts, training, names, quality_weight=quality_weight)
        groups = {f"{held} / smollm2": [pair for pair in synth if pair.source == held]}
        if held == "scar_human":
            groups[f"{held} / gpt-3.5 mix"] = gpt35
        groups[f"{held} / {len({pair.generator for pair in strong})} alpaca_eval generators"] = [
            pair for pair in strong if pair.source == held
        ]
        groups.update(checks)
        results.append({"held_out": held, "l2": ranker.details["l2"], "training_pairs": len(training), "rows": evaluation_rows(texts, groups, ranker, names)})
    return results


def alpaca_eval_checks(data: Path, limit: int | None) -> dict[str, list[MatchedPair]]:
    """AlpacaEval pairs of a stronger over a weaker generator (the first `limit` of each), not used in training."""
    folder = data / "alpaca_eval"
    checks = {}
    for stronger, weaker in (("gpt4", "alpaca-7b"), ("gpt4_1106_preview", "text_davinci_003"), ("Meta-Llama-3-8B-Instruct", "alpaca-7b")):
        pairs = [pair for pair in alpaca_eval_pairs(folder, stronger, weaker) if in_check_half(pair.instruction)]
        checks[f"alpaca_eval / {stronger} over {weaker}"] = pairs[:limit]
    return checks


def _records(texts: list[str], instructions: list[str]) -> list[Record]:
    return [
        Record(str(index), (Turn("user", instruction), Turn("assistant", text)), {"instruction": instruction, "output": text}, index)
        for index, (instruction, text) in enumerate(zip(instructions, texts))
    ]


def first_response(record: Record) -> str:
    """The first assistant turn's text: every record here is one instruction and its response."""
    return record.pairs()[0][1]


def spread_check(scores: np.ndarray, records: list[Record], keep: float) -> dict:
    """TTR and MTLD standard deviation of the pool and of its top `keep` share by `scores`."""
    from sftselect.analysis.analyze import analyze

    top = np.argsort(-scores, kind="stable")[: max(1, int(round(keep * len(records))))]
    summary = analyze(records, {"top": [records[index] for index in top]}, use_lm=False).summary()
    stats = {row["name"]: row["metrics"] for row in summary}
    return {
        "records": len(records),
        **{f"{group}_{metric}_std": round(stats[group][metric]["std"], 3) for group in ("pool", "top") for metric in ("ttr", "mtld")},
    }


def mixed_pools(texts: Texts, synth, gpt35, quality, data: Path, names: list[str], quality_weight: float = 1.0) -> list[dict]:
    """Per held-out source, its human and LLM answers to the same instructions, ranked by the ranker trained without it.

    With form features only, also the check half of AlpacaEval's six generators (no LM features are computed for it).
    """
    results = []
    for held in HUMAN_SOURCES:
        training = [pair for pair in synth + gpt35 if pair.source != held] + quality
        ranker = train(texts, training, names, quality_weight=quality_weight)
        held_pairs = [pair for pair in synth + gpt35 if pair.source == held]
        answers = list(dict.fromkeys((pair.instruction, text) for pair in held_pairs for text in (pair.worse, pair.better)))
        columns = [texts.names.index(name) for name in names]
        scores = ranker.score_features(texts.matrix[[texts.row[key] for key in answers]][:, columns])
        records = _records([text for _, text in answers], [instruction for instruction, _ in answers])
        results.append({"pool": f"{held}: human + {'SmolLM2 + GPT-3.5' if held == 'scar_human' else 'SmolLM2'}", **spread_check(scores, records, 0.25)})
    if any(name in SURPRISAL_FEATURES for name in names):
        return results
    ranker = train(texts, synth + gpt35 + quality, names, quality_weight=quality_weight)
    pool = []
    for generator in STRENGTH_ORDER:
        items = json.loads((data / "alpaca_eval" / f"{generator}.model_outputs.json").read_text(encoding="utf-8"))
        items = [item for item in items if in_check_half(item["instruction"])][:200]
        pool += [(item["instruction"], item["output"]) for item in items if item["output"].strip()]
    records = _records([text for _, text in pool], [instruction for instruction, _ in pool])
    scores = ranker.score_texts([text for _, text in pool])
    results.append({"pool": f"alpaca_eval: {len(STRENGTH_ORDER)} generators x 200 check-half instructions", **spread_check(scores, records, 0.25)})
    return results


def alpaca_selection(ranker, path: Path, limit: int | None = None) -> dict:
    """Top 10% of the Alpaca 5000 file (its first `limit` records): share of responses of 5 words or fewer and median length, beside the pool's."""
    from sftselect.text_metrics import words
    from sftselect.io import read_dataset
    from sftselect.scorers.style_ranker import StyleFeatureScorer

    records = read_dataset(str(path)).records[:limit]
    started = time.perf_counter()
    scores = StyleFeatureScorer(ranker).score(records)
    seconds = time.perf_counter() - started
    top = np.argsort(-scores, kind="stable")[: len(records) // 10]
    lengths = np.array([len(words(first_response(record))) for record in records])
    return {
        "records": len(records),
        "records_per_second": round(len(records) / seconds, 1),
        "pool_share_5_words_or_fewer": round(float(np.mean(lengths <= 5)), 3),
        "top10_share_5_words_or_fewer": round(float(np.mean(lengths[top] <= 5)), 3),
        "pool_median_words": float(np.median(lengths)),
        "top10_median_words": float(np.median(lengths[top])),
        "top10_first": [first_response(records[index])[:60] for index in top[:5]],
    }


def markdown(report: dict) -> str:
    """The report's figures as the Markdown tables of bench/RESULTS.md."""
    lines = []
    for key, results in report.items():
        if not key.startswith("leave_sources_out"):
            continue
        lines += [f"Leave-sources-out, {key.split('(')[1].rstrip(')')} features (pairwise accuracy: LLM answer above the human one, "
                  "or the stronger generator's above the weaker's):", "",
                  "| held out (L2, training pairs) | pairs | n (instructions) | ranker (95%, instructions resampled) | length rule | code rule |",
                  "|---|---|---|---|---|---|"]
        for result in results:
            for row in result["rows"]:
                low, high = row["ranker_95"]
                lines.append(f"| {result['held_out']} ({result['l2']}, {result['training_pairs']}) | {row['pairs']} | {row['count']} "
                             f"({row['instructions']}) | **{row['ranker']:.3f}** ({low:.2f}-{high:.2f}) | {row['length_rule']:.3f} | "
                             f"{row['code_rule']:.3f} |")
        lines.append("")
    lines += ["Held-out mixed-style pools, top 25% by the ranker trained without the pool's source:", "",
              "| features | pool | records | TTR std pool -> top 25% | MTLD std pool -> top 25% |", "|---|---|---|---|---|"]
    for key, pools in report.items():
        for pool in pools if key.startswith("mixed_pools") else ():
            lines.append(f"| {key.split('(')[1].rstrip(')')} | {pool['pool']} | {pool['records']} | {pool['pool_ttr_std']:.3f} -> "
                         f"{pool['top_ttr_std']:.3f} | {pool['pool_mtld_std']:.2f} -> {pool['top_mtld_std']:.2f} |")
    selection = report["alpaca_5000"]
    lines += ["", f"Alpaca 5000 (first {selection['records']} records), top 10% by the final {report['final']['features']} ranker "
              f"({selection['records_per_second']} records/s): {selection['top10_share_5_words_or_fewer']:.1%} of responses of 5 words or "
              f"fewer (pool {selection['pool_share_5_words_or_fewer']:.1%}), median {selection['top10_median_words']:.0f} words "
              f"(pool {selection['pool_median_words']:.0f})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="The shared data folder.")
    parser.add_argument("--answers", type=Path, required=True, help="bench/synth_ranker_answers.py's JSONL of SmolLM2 answers.")
    parser.add_argument("--generate", action="store_true", help="Run (or resume) bench/synth_ranker_answers.py into --answers first.")
    parser.add_argument("--per-source", type=int, default=None, help="With --generate: at most this many instructions per source.")
    parser.add_argument("-o", "--output", type=Path, default=None, help="Folder to write the final ranker to (trained on every pair).")
    parser.add_argument("--quality-pairs", action="store_true", help="Also train on AlpacaEval stronger-over-weaker pairs.")
    parser.add_argument("--quality-per-group", type=int, default=None, help="With --quality-pairs: at most this many pairs per generator pair.")
    parser.add_argument("--quality-weight", type=float, default=1.0,
                        help="With --quality-pairs: how much each AlpacaEval generator pair weighs against one human source's pairs.")
    parser.add_argument("--surprisal", action="store_true", help="Compare with SmolLM2 loss features added (slow on a CPU).")
    parser.add_argument("--lm", default=None, help="The causal LM of the surprisal features (default: the packaged SmolLM2-135M-Instruct).")
    parser.add_argument("--lm-cache", type=Path, default=Path("bench/out/ranker_surprisal.json"), help="Where SmolLM2 losses are kept.")
    parser.add_argument("--check-limit", type=int, default=None, help="At most this many pairs per AlpacaEval check (LM features cost time).")
    parser.add_argument("--final-features", choices=list(VARIANTS), default="form",
                        help="The features of the ranker written to --output (the surprisal ones need --surprisal).")
    parser.add_argument("--alpaca-limit", type=int, default=None, help="Score only the first N Alpaca records (an LM ranker is slow).")
    parser.add_argument("--report", type=Path, default=None, help="Write every figure as JSON here too.")
    args = parser.parse_args(argv)
    if args.final_features != "form" and not args.surprisal:
        parser.error(f"--final-features {args.final_features} needs --surprisal")

    if args.generate:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import synth_ranker_answers

        extra = ["--per-source", str(args.per_source)] if args.per_source else []
        synth_ranker_answers.main(["--data", str(args.data), "-o", str(args.answers), *extra])

    synth, dropped = synth_answer_pairs(args.answers, more_human_answers=oasst_top_replies(args.data / "oasst/oasst_en_100_tree.jsonl"))
    gpt35 = scar_gpt35_pairs(
        args.data / "sharegpt/scar_open_human_id_selection_1000.json", args.data / "sharegpt/scar_open_mix_gpt35_id_selection_1000.json"
    )
    strong = oasst_alpaca_eval_pairs(args.data / "oasst/oasst_en_100_tree.jsonl", args.data / "alpaca_eval")
    strong_instructions = {pair.instruction for pair in strong}
    quality = [
        pair
        for stronger, weaker in (QUALITY_TRAINING if args.quality_pairs else ())
        for pair in [pair for pair in alpaca_eval_pairs(args.data / "alpaca_eval", stronger, weaker)
                     if not in_check_half(pair.instruction) and pair.instruction not in strong_instructions][: args.quality_per_group]
    ]
    checks = alpaca_eval_checks(args.data, args.check_limit)
    everything = synth + gpt35 + quality + strong + [pair for pairs in checks.values() for pair in pairs]
    # GPT-3.5 pairs first: the held-out figure that matters most, should a run be stopped early.
    surprisal = lm_losses(gpt35 + quality + everything, args.lm_cache, args.lm) if args.surprisal else None
    texts = Texts(everything, surprisal)
    counts = {source: sum(pair.source == source for pair in synth) for source in HUMAN_SOURCES}
    print(f"SmolLM2 pairs per source: {counts} ({dropped} looping or empty answers dropped); GPT-3.5 pairs: {len(gpt35)}; "
          f"AlpacaEval training pairs: {len(quality)}")

    report: dict = {"pairs": {"smollm2": counts, "smollm2_dropped": dropped, "gpt35": len(gpt35), "alpaca_eval_training": len(quality)}}
    for variant, names in VARIANTS.items():
        if surprisal is None and variant != "form":
            continue
        report[f"leave_sources_out ({variant})"] = results = leave_sources_out(texts, synth, gpt35, quality, strong, checks, names, args.quality_weight)
        print(f"\n## leave-sources-out, {variant} features")
        for result in results:
            print(f"held out {result['held_out']} (l2 {result['l2']}, {result['training_pairs']} training pairs)")
            for row in result["rows"]:
                print(f"  {row['pairs']:48s} n={row['count']:4d}  ranker {row['ranker']:.3f} ({row['ranker_95'][0]:.2f}-{row['ranker_95'][1]:.2f})"
                      f"  length {row['length_rule']:.3f}  code {row['code_rule']:.3f}")
        report[f"mixed_pools ({variant})"] = pools = mixed_pools(texts, synth, gpt35, quality, args.data, names, args.quality_weight)
        print(f"\n## held-out mixed-style pools, {variant} features, top 25%: TTR and MTLD standard deviation")
        for pool in pools:
            print(f"  {pool['pool']:58s} n={pool['records']:4d}  TTR {pool['pool_ttr_std']:.3f} -> {pool['top_ttr_std']:.3f}  "
                  f"MTLD {pool['pool_mtld_std']:.2f} -> {pool['top_mtld_std']:.2f}")

    training = synth + gpt35 + quality
    names = VARIANTS[args.final_features]
    command = "python " + shlex.join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])])
    ranker = train(texts, training, names, details={
        "recipe": f"logistic regression without intercept on the difference of standardised {args.final_features} features of "
                  "two responses to the same instruction (LLM answer over human answer, stronger LLM over weaker), each "
                  "(source, generator) group weighing the same"
                  + (f" (AlpacaEval quality groups {args.quality_weight:g} times as much)" if args.quality_weight != 1 else "")
                  + ", L2 penalty chosen by leave-one-source-out",
        "training_pairs": {"smollm2": counts, "gpt35_scar_mix": len(gpt35), "alpaca_eval_quality": len(quality)},
        "command": command,
    }, quality_weight=args.quality_weight)
    ranker.lm_model = args.lm
    l2 = ranker.details["l2"]
    report["final"] = {"features": args.final_features, "l2": l2, "training_pairs": len(training),
                       "weights": dict(zip(names, np.round(ranker.weights, 4).tolist()))}
    alpaca = args.data / "alpaca/stanford_alpaca_pr152_alpaca_5000.json"
    report["alpaca_5000"] = selection = alpaca_selection(ranker, alpaca, args.alpaca_limit)
    print(f"\n## final ranker ({args.final_features}, l2 {l2}, {len(training)} pairs) on Alpaca 5000, top 10%")
    print(json.dumps(selection, indent=1, ensure_ascii=False))
    if args.output is not None:
        ranker.save_pretrained(args.output)
        with atomic_path(args.output / "training_report.json") as staging:
            staging.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    if args.report is not None:
        with atomic_path(args.report) as staging:
            staging.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print("\n" + markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
