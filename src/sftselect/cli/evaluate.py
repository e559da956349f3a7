"""`sftselect eval`: HumanEval pass@k, or a pairwise win rate judged by an LLM."""

from __future__ import annotations

from typing import List, Optional

import typer

from sftselect.cli.options import UNSAFE_NO_SANDBOX_HELP, OverwriteOption
from sftselect.cli.output import console

app = typer.Typer(help="Evaluate a model: HumanEval pass@k, or pairwise win rate judged by an LLM.", no_args_is_help=True)
EVAL_MODEL_HELP = "Model to evaluate: a model folder, a `finetune` output folder (its merged model, else its adapter) or a hub id."


@app.command("humaneval")
def eval_humaneval(
    model: str = typer.Option(..., "--model", metavar="PATH", help=EVAL_MODEL_HELP),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N of the 164 tasks."),
    samples: int = typer.Option(1, "--samples", help="Solutions generated per task (more than 1 needs --temperature > 0)."),
    temperature: float = typer.Option(0.0, "--temperature", help="Sampling temperature; 0 is greedy."),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling when --temperature > 0."),
    k: Optional[List[int]] = typer.Option(None, "--k", help="Report pass@k; repeatable (default: 1)."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Longest answer in tokens."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts generated at once."),
    prompt_style: Optional[str] = typer.Option(
        None, "--prompt-style", help="'chat' (ask through the chat template, take the code block) or 'completion' (continue the prompt); default: chat when the tokenizer has a template."
    ),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds each test program may run."),
    memory_mb: int = typer.Option(1024, "--memory-mb", help="Address-space limit of each test program, in MiB."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write pass@k and every sample's code and outcome here (JSON)."),
    unsafe_no_sandbox: bool = typer.Option(False, "--unsafe-no-sandbox", help=UNSAFE_NO_SANDBOX_HELP),
    overwrite: OverwriteOption = False,
) -> None:
    """HumanEval pass@k: generated code runs in a bubblewrap sandbox (no network, no files but its own, no caller's environment; time and memory limits)."""
    from sftselect.evaluation.evaluate import HumanEvalSettings, evaluate_model
    from sftselect.evaluation.sandbox import require_sandbox
    from sftselect.io.atomic import check_outputs
    from sftselect.io.write import write_json_file

    check_outputs([output], [], overwrite)
    if require_sandbox(unsafe_no_sandbox) is None:
        console.print("[bold red]warning:[/] running generated code WITHOUT a sandbox (--unsafe-no-sandbox)", highlight=False)
    settings = HumanEvalSettings(
        limit=limit, samples=samples, k=tuple(k or (1,)), max_new_tokens=max_new_tokens, temperature=temperature,
        top_p=top_p, batch_size=batch_size, seed=seed, prompt_style=prompt_style, timeout=timeout,
        memory_mb=memory_mb, unsafe_no_sandbox=unsafe_no_sandbox,
    )
    result = evaluate_model(model, humaneval=settings).humaneval
    if output:
        write_json_file({"model": model, **result.as_dict()}, output, overwrite)
    for at, value in result.pass_at.items():
        print(f"pass@{at}\t{value:.4f}\t({result.tasks} tasks, {result.samples_per_task} samples each, {result.prompt_style} prompts)")


@app.command("judge")
def eval_judge(
    model: str = typer.Option(..., "--model", metavar="PATH", help=EVAL_MODEL_HELP),
    questions: str = typer.Option(..., "--questions", metavar="FILE", help="JSON/JSONL questions: AlpacaEval outputs (instruction, output), MT-Bench/Vicuna `turns`, or instruction/question/prompt."),
    judge_base_url: str = typer.Option(..., "--judge-base-url", metavar="URL", help="OpenAI-compatible endpoint of the judge, e.g. http://127.0.0.1:8000/v1."),
    judge_model: str = typer.Option("gpt-4o-mini", "--judge-model", help="Judge model name at that endpoint (API key from OPENAI_API_KEY or SFTSELECT_API_KEY)."),
    reference: Optional[str] = typer.Option(None, "--reference", metavar="FILE", help="Reference model's answers (same layout, same order as --questions); default: the questions file's own output/answer field."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N questions."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Longest answer of the evaluated model, in tokens."),
    batch_size: int = typer.Option(8, "--batch-size", help="Questions answered at once."),
    concurrency: int = typer.Option(8, "--concurrency", help="Judge requests in flight at once."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not keep or reuse the judge's replies (default: cached, so a rerun costs nothing)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write the win rate and every question's verdicts here (JSON)."),
    overwrite: OverwriteOption = False,
) -> None:
    """Pairwise win rate against a reference model's answers, each question judged in both orders."""
    from sftselect.evaluation.evaluate import JudgeSettings, evaluate_model
    from sftselect.io.atomic import check_outputs
    from sftselect.io.write import write_json_file

    check_outputs([output], [questions, reference], overwrite)
    settings = JudgeSettings(
        questions=questions, base_url=judge_base_url, model=judge_model, reference=reference, limit=limit,
        max_new_tokens=max_new_tokens, batch_size=batch_size, concurrency=concurrency, cache=not no_cache,
    )
    result = evaluate_model(model, judge=settings).judge
    if output:
        write_json_file({"model": model, "judge": judge_model, **result.as_dict()}, output, overwrite)
    print(
        f"win rate\t{result.win_rate:.4f}\t(wins {result.wins}, ties {result.ties}, losses {result.losses}; "
        f"{result.position_inconsistent} position-inconsistent, {result.unjudged} unjudged)"
    )
