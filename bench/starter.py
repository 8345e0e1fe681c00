"""How the starter model answers everyday questions: the question-and-answer page against the old chat turns.

    .venv/bin/python bench/starter.py [--model PATH] [--threads 2] [--seed 7] [--no-baseline] [--repetition]

Prints one JSON object. Every prompt of `PROMPTS` is answered twice in the same run,
with the same seed: through `run_turn` as the app does now (the base-model page, stop
sequences, answer cap and DRY, over the app's default sampling settings), and the old
way (Gemma chat turns, the old sampling, grounded questions preceded by the written
instructions). The seed is fixed and the threads pinned, so a rerun on the same machine
prints the same figures.

What is measured, per answer:

- loops: more than `LOOP_THRESHOLD` of the answer's word 4-grams repeat an earlier
  4-gram of the same answer. Prose of a paragraph or two restates itself in whole
  four-word phrases rarely: a 120-word answer with one repeated phrase ("the end of
  the") is at about 0.02. Text that cycles is at 0.5 and above (the old prompting's
  answers that ran to the token limit were at 0.8 to 0.99). 0.2 (one 4-gram in five
  a repeat) sits far from both, and answers under 12 words are never said to loop.
- echoes: the answer contains the whole question (its words, in order, for questions
  of three words or more), or shares a run of `ECHO_RUN` consecutive words with text
  the user never typed: the page's opening and worked examples, the old written
  grounding instructions, or the system prompt. Six words in a row do not match by
  chance in answers this short; quoting a source passage is not an echo.
- switches language: the answer is in a language other than the prompt's. More than
  2% of its letters outside the prompt's script (Latin letters with Latin-1 accents
  for the languages here), or, among the answer's function words (the, est, und...,
  the commonest words of every language), more from another language than from the
  prompt's, with at least three of them. An answer too short to carry function words
  (a number, a name) is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.chat.completion import MAX_ANSWER_TOKENS, CompletionFrame, PageSources
from app.core.chat.message import ChatMessage
from app.core.chat.prompt_builder import build_prompt
from app.core.chat.templates import GemmaTurnTemplate
from app.core.docs.grounding import Grounding, Source, prompt_for
from app.core.engine import llama_log
from app.core.engine.generation import SamplingParams, base_model_sampling
from app.core.engine.llama_engine import LlamaEngine, LoadOptions
from app.core.models.starter import ensure_starter_model
from app.core.store.ref import Ref
from app.core.turn import TurnEvents, TurnRequest, TurnSaving, run_turn

N_CTX = 4096
LOOP_THRESHOLD = 0.2
LOOP_MIN_WORDS = 12
ECHO_RUN = 6
FOREIGN_LETTERS = 0.02
MIN_FUNCTION_WORDS = 3


@dataclass(frozen=True)
class Prompt:
    """One everyday request: earlier turns, an optional system prompt, optional sources, the question."""

    kind: str
    question: str
    language: str = "en"
    earlier: tuple[tuple[str, str], ...] = ()  # (question, answer) turns before it
    system: str = ""
    sources: tuple[tuple[str, str], ...] = ()  # (file name, passage)


PROMPTS = (
    Prompt("fact", "What is the capital of France?"),
    Prompt("fact", "Who wrote Romeo and Juliet?"),
    Prompt("fact", "How many legs does a spider have?"),
    Prompt("fact", "At what temperature does water boil at sea level?"),
    Prompt("fact", "Which planet is closest to the sun?"),
    Prompt("fact", "What language do people speak in Brazil?"),
    Prompt("fact", "How many days are there in a leap year?"),
    Prompt("how-to", "How do I boil an egg?"),
    Prompt("how-to", "How can I get a coffee stain out of a white shirt?"),
    Prompt("how-to", "Give me three tips for sleeping better."),
    Prompt("how-to", "How do I fix a flat bicycle tyre?"),
    Prompt("how-to", "What should I pack for a weekend camping trip?"),
    Prompt("how-to", "How often should I water a cactus?"),
    Prompt("writing", "Write a haiku about rain."),
    Prompt("writing", "Write a short email asking my manager for Friday off."),
    Prompt("writing", "Write a birthday message for my sister."),
    Prompt("writing", "Suggest a name for a small bakery."),
    Prompt("writing", "Write a two-sentence story about a lost cat."),
    Prompt("arithmetic", "What is 12 times 7?"),
    Prompt("arithmetic", "What is 15% of 200?"),
    Prompt("arithmetic", "I have 3 apples and buy 5 more. How many apples do I have?"),
    Prompt("arithmetic", "What is 144 divided by 12?"),
    Prompt("definition", "What is photosynthesis?"),
    Prompt("definition", "What does the word 'ephemeral' mean?"),
    Prompt("definition", "What is a mortgage?"),
    Prompt("definition", "What is the difference between weather and climate?"),
    Prompt("follow-up", "What about Spain?", earlier=(("What is the capital of Italy?", "Rome."),)),
    Prompt("follow-up", "Is it healthy?", earlier=(("Name a yellow fruit.", "A banana."),)),
    Prompt(
        "follow-up",
        "How many eggs do I need?",
        earlier=(("How do I make pancakes?", "Mix flour, eggs and milk into a batter, then fry it in a hot pan."),),
    ),
    Prompt("other language", "Quelle est la capitale de l'Allemagne ?", language="fr"),
    Prompt("other language", "¿Cuántos días tiene una semana?", language="es"),
    Prompt("system prompt", "Why is the sky blue?", system="Answer in one sentence."),
    Prompt(
        "documents",
        "When does the library close on weekdays?",
        sources=(
            ("library.txt", "The library opens at 9:00 and closes at 18:00 on weekdays."),
            ("weekend.txt", "On Saturdays the library is open from 10:00 to 14:00. It is closed on Sundays."),
        ),
    ),
    Prompt(
        "documents",
        "How many days of paid leave do I get?",
        sources=(
            ("handbook.md", "Every employee gets 25 days of paid leave per year, plus public holidays."),
            ("handbook.md", "Sick leave needs a doctor's note after three days."),
        ),
    ),
)

# Function words, the commonest words of each language (accents folded away).
_FUNCTION_WORDS = {
    "en": "the and is are of to in it you that for with on this be your at or can was",
    "fr": "le la les et est des du une que pour dans il elle sont au avec ce qui pas",
    "es": "el la los las y es del una que por para con son se hay tiene esta como",
    "de": "der die das und ist ein eine nicht mit den dem von auf sind zu",
    "it": "il lo gli di che una per con sono della non nel alla",
    "pt": "os as uma para com nao sao do da em um",
    "id": "yang dan di ini itu untuk dengan adalah tidak dari",
    "nl": "het een van en zijn niet op voor met dat",
}
FUNCTION_WORDS = {lang: frozenset(listed.split()) for lang, listed in _FUNCTION_WORDS.items()}


def words(text: str) -> list[str]:
    """Lower-case words, accents folded, punctuation dropped."""
    folded = unicodedata.normalize("NFKD", text.lower())
    return re.findall(r"\w+", "".join(c for c in folded if not unicodedata.combining(c)))


def repeated_4gram_rate(text: str) -> float:
    """The share of the answer's word 4-grams that repeat an earlier one."""
    w = words(text)
    grams = [tuple(w[i : i + 4]) for i in range(len(w) - 3)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def loops(text: str) -> bool:
    """True when the answer repeats itself in whole phrases (see the module docstring)."""
    return len(words(text)) >= LOOP_MIN_WORDS and repeated_4gram_rate(text) > LOOP_THRESHOLD


def _runs(text: str, n: int) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def echoes(answer: str, question: str, hidden: str) -> bool:
    """True when the answer repeats the whole question, or six words in a row of the hidden prompt text."""
    q = words(question)
    a = words(answer)
    if len(q) >= 3 and any(a[i : i + len(q)] == q for i in range(len(a) - len(q) + 1)):
        return True
    return bool(_runs(answer, ECHO_RUN) & _runs(hidden, ECHO_RUN))


def _script_letters(text: str) -> tuple[int, int]:
    """(letters, letters outside Latin with Latin-1 accents)."""
    letters = [c for c in text if c.isalpha()]
    foreign = [c for c in letters if ord(c) > 0xFF]
    return len(letters), len(foreign)


def language(text: str) -> str | None:
    """The language whose function words the text uses most, or None with fewer than three of them."""
    w = words(text)
    counts = {lang: sum(1 for x in w if x in vocab) for lang, vocab in FUNCTION_WORDS.items()}
    best = max(counts, key=lambda lang: counts[lang])
    return best if counts[best] >= MIN_FUNCTION_WORDS else None


def switches_language(answer: str, prompt_language: str) -> bool:
    """True when the answer is not in the prompt's language (see the module docstring)."""
    letters, foreign = _script_letters(answer)
    if letters and foreign / letters > FOREIGN_LETTERS:
        return True
    found = language(answer)
    if found is None or found == prompt_language:
        return False
    own = sum(1 for x in words(answer) if x in FUNCTION_WORDS[prompt_language])
    return own < sum(1 for x in words(answer) if x in FUNCTION_WORDS[found])


def _sources(prompt: Prompt) -> list[Source]:
    return [
        Source(n, n, n, name, None, None, None, None, text) for n, (name, text) in enumerate(prompt.sources, start=1)
    ]


def _history(prompt: Prompt, question: str) -> tuple[ChatMessage, ...]:
    turns: list[ChatMessage] = []
    for q, a in prompt.earlier:
        turns += [ChatMessage("user", q), ChatMessage("assistant", a)]
    return (*turns, ChatMessage("user", question))


class _Sources:
    """A TurnStore that saves nothing and grounds every question in the prompt's passages."""

    def __init__(self, prompt: Prompt) -> None:
        self.sources = _sources(prompt)
        self.stats: dict[str, Any] | None = None

    def save_start(self, *_args: object) -> None:
        return None

    def ground(self, _conversation_id: int, _question: str, _budget: int) -> Grounding:
        return Grounding("whole", self.sources, [], prompt_for(self.sources, []))

    def checkpoint(self, _answer: Ref, _text: str) -> None:
        return None

    def save_answer(self, _answer: Ref, _text: str, stats: dict[str, Any] | None) -> None:
        self.stats = stats


def answer_now(engine: LlamaEngine, prompt: Prompt, sampling: SamplingParams) -> tuple[str, int, tuple[int, ...]]:
    """The answer as the app gives it (through run_turn): text, tokens, cited sources."""
    pieces: list[str] = []
    engine.forget_cache()  # each answer computed from scratch, so it does not depend on the one before
    request = TurnRequest(1, _history(prompt, prompt.question), prompt.system, sampling)
    store = _Sources(prompt) if prompt.sources else None
    if store is not None:
        request = replace(request, saving=TurnSaving(Ref(1), (), Ref(2), question=Ref(3), conversation_id=1))
    result = run_turn(engine, request, TurnEvents(text=pieces.append), store)
    return "".join(pieces), result.stats.completion_tokens, result.cited


def answer_before(engine: LlamaEngine, prompt: Prompt, sampling: SamplingParams) -> tuple[str, int]:
    """The answer as the app gave it before: Gemma turns, written grounding instructions, the old sampling."""
    question = prompt.question
    if prompt.sources:
        question = f"{prompt_for(_sources(prompt), [])}\n\nQuestion: {question}"
    built = build_prompt(
        _history(prompt, question), prompt.system, GemmaTurnTemplate(), engine.tokenize, N_CTX, sampling.max_tokens
    )
    pieces: list[str] = []
    engine.forget_cache()
    stats = engine.generate(built.tokens, sampling, threading.Event(), pieces.append)
    return "".join(pieces), stats.completion_tokens


# Repetition control alone (--repetition): the page without its stop sequences, greedy, so an
# answer runs on into invented questions until the cap, where loops show.
REPETITION_VARIANTS = {
    "repeat penalty 1.1 only": {"dry_multiplier": 0.0, "presence_penalty": 0.0},
    "DRY 0.8": {"dry_multiplier": 0.8, "presence_penalty": 0.0},
    "frequency 0.3 + presence 0.3": {"dry_multiplier": 0.0, "presence_penalty": 0.3, "frequency_penalty": 0.3},
    "DRY 0.8 + presence 0.3 (used)": {},
}


def answer_without_stops(engine: LlamaEngine, prompt: Prompt, changes: dict[str, Any]) -> tuple[str, int]:
    """The page's answer with every stop sequence removed and the repetition control replaced by `changes`."""
    frame = CompletionFrame(citing=bool(prompt.sources))
    greedy = SamplingParams(temperature=0.0)
    sampling = base_model_sampling(greedy, (), MAX_ANSWER_TOKENS, frame.not_to_copy(prompt.system))
    sampling = replace(sampling, **changes)
    *earlier, question = _history(prompt, prompt.question)
    passages = PageSources().turn(_sources(prompt), [], True) if prompt.sources else ""
    history = (*earlier, replace(question, context=passages))
    built = build_prompt(history, prompt.system, frame, engine.tokenize, N_CTX, sampling.max_tokens)
    pieces: list[str] = []
    engine.forget_cache()
    stats = engine.generate(built.tokens, sampling, threading.Event(), pieces.append)
    return "".join(pieces), stats.completion_tokens


def repetition_control(engine: LlamaEngine) -> dict[str, Any]:
    """Loop rate and mean repeated 4-gram rate of each repetition control, with no stop sequence to help."""
    found = {}
    for name, changes in REPETITION_VARIANTS.items():
        answers = [answer_without_stops(engine, prompt, changes) for prompt in PROMPTS]
        found[name] = {
            "loop_rate": round(sum(loops(text) for text, _ in answers) / len(answers), 3),
            "mean_repeated_4gram_rate": round(statistics.mean(repeated_4gram_rate(text) for text, _ in answers), 3),
            "median_tokens": statistics.median(tokens for _, tokens in answers),
        }
    return found


def hidden_text(prompt: Prompt) -> str:
    """Everything either prompting puts around the question that the user did not type (sources excepted)."""
    instructions = prompt_for(_sources(prompt), []).split("Sources:")[0] if prompt.sources else ""
    page = CompletionFrame(citing=bool(prompt.sources)).preamble(prompt.system)
    return "\n".join((page, instructions, prompt.system))


def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates over the answers, and the median length in tokens."""
    n = len(rows)
    return {
        "loop_rate": round(sum(r["loops"] for r in rows) / n, 3),
        "echo_rate": round(sum(r["echoes"] for r in rows) / n, 3),
        "language_switch_rate": round(sum(r["switches_language"] for r in rows) / n, 3),
        "median_tokens": statistics.median(r["tokens"] for r in rows),
        "max_tokens": max(r["tokens"] for r in rows),
    }


def judge(prompt: Prompt, text: str, tokens: int) -> dict[str, Any]:
    """One answer's measurements."""
    return {
        "kind": prompt.kind,
        "question": prompt.question,
        "tokens": tokens,
        "repeated_4gram_rate": round(repeated_4gram_rate(text), 3),
        "loops": loops(text),
        "echoes": echoes(text, prompt.question, hidden_text(prompt)),
        "switches_language": switches_language(text, prompt.language),
        "answer": text if len(text) <= 300 else text[:300] + "…",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="GGUF to measure (default: the starter model)")
    parser.add_argument("--threads", type=int, default=2, help="pinned, so that reruns match")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-baseline", action="store_true", help="skip the old prompting (it runs to 1,024 tokens)")
    parser.add_argument("--repetition", action="store_true", help="also compare repetition controls without stops")
    args = parser.parse_args()
    llama_log.install()  # llama.cpp's chatter goes to logging, not the JSON output
    scratch = Path(tempfile.mkdtemp(prefix="tern-bench-"))
    model = args.model or ensure_starter_model(scratch / "models")
    engine = LlamaEngine()
    engine.load(model, LoadOptions(n_ctx=N_CTX, n_threads=args.threads), trusted=args.model is None)
    now_sampling = replace(SamplingParams(), seed=args.seed)  # the app's defaults, as Settings starts them
    before_sampling = SamplingParams(
        temperature=0.7, top_p=0.95, top_k=64, repeat_penalty=1.1, max_tokens=1024, seed=args.seed
    )
    now_rows, before_rows = [], []
    for number, prompt in enumerate(PROMPTS, start=1):
        print(f"{number}/{len(PROMPTS)} {prompt.question}", file=sys.stderr, flush=True)  # progress; not the JSON
        text, tokens, cited = answer_now(engine, prompt, now_sampling)
        row = judge(prompt, text, tokens)
        if prompt.sources:
            row["cited"] = list(cited)
        now_rows.append(row)
        if not args.no_baseline:
            before_rows.append(judge(prompt, *answer_before(engine, prompt, before_sampling)))
    now = score(now_rows)
    report: dict[str, Any] = {
        "model": model.name,
        "template": engine.template.name if engine.template else None,
        "prompts": len(PROMPTS),
        "seed": args.seed,
        "threads": args.threads,
        **now,
        "thresholds": {"loop_4gram_rate": LOOP_THRESHOLD, "echo_run_words": ECHO_RUN},
    }
    if before_rows:
        before = score(before_rows)
        report["baseline_chat_turns"] = before
        report["ratios_now_over_baseline"] = {
            key: round(now[key] / before[key], 3) if before[key] else None
            for key in ("loop_rate", "echo_rate", "language_switch_rate", "median_tokens")
        }
    if args.repetition:
        report["repetition_control_without_stops_greedy"] = repetition_control(engine)
    report["answers"] = now_rows
    if before_rows:
        report["baseline_answers"] = [
            {
                k: r[k]
                for k in ("question", "tokens", "repeated_4gram_rate", "loops", "echoes", "switches_language", "answer")
            }
            for r in before_rows
        ]
    engine.unload()
    print(json.dumps(report, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    main()
