"""Images on an E2B-shaped Gemma 4 with its synthetic projector: encoding, first and follow-up TTFT, memory.

    .venv/bin/python bench/vision.py [--model PATH] [--projector PATH] [--threads 2] [--repeat 3]

Prints one JSON object. The model defaults to the real-vocabulary E2B-shaped Gemma 4
(`python -m tools.synthetic_gemma e2b --quant Q4_K_M --out ~/.cache/tern/synthetic-real-vocab`),
the projector to its E2B-shaped synthetic one (written here with `tools.synthetic_mmproj`
when missing). Everything runs through the app's turn pipeline (`run_turn`), with the
image prepared by the image reader's child process, as in the chat.

- encode: one image (a 2048 × 1536 photo-like picture) at three detail settings (tokens
  per image): the projector's encoding and the text model's reading of its tokens, in ms.
- turns: a conversation of two questions, the first with the image, and the same two
  questions without it; each from an empty cache, `--repeat` times. Every answer goes
  back into the history as the same short text, so the follow-ups read the same tokens.
  The ratio that matters is the follow-up's TTFT with the image over without it (the
  image must not be encoded or read again).
- memory: peak RSS of a child process that loads the model and answers one question,
  without the projector, and with it (answering about the image), and its RSS once
  the answer is done; the differences are set against the projector's file size plus
  the compute buffer libmtmd reported. (The peak is usually the model's load, which
  the projector, loaded after it, does not raise.) `--memory-only` measures just this.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import psutil
from PIL import Image

from app.core.chat.image import StoredImage
from app.core.chat.message import ChatMessage
from app.core.engine.generation import SamplingParams
from app.core.engine.llama_engine import LlamaEngine
from app.core.engine.options import LoadOptions
from app.core.engine.vision import PIXELS_SIDE
from app.core.images import ImageReader
from app.core.turn import TurnEvents, TurnRequest, run_turn

E2B = Path.home() / ".cache" / "tern" / "synthetic-real-vocab" / "gemma4-e2b-shaped-Q4_K_M.gguf"
SAMPLING = SamplingParams(temperature=0.0, max_tokens=8)
KEPT_ANSWER = "Noted."
QUESTIONS = ("What is in this picture?", "Which colour covers most of it?")
DETAILS = (70, 280, 1120)
CONTEXT = 4096


def photo(width: int = 2048, height: int = 1536) -> bytes:
    """A picture with smooth gradients and some texture, as PNG (no file)."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(7)
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=-1)
    rgb = np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
    from io import BytesIO

    out = BytesIO()
    Image.fromarray(rgb, "RGB").save(out, "PNG")
    return out.getvalue()


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ensure_projector(model: Path) -> Path:
    """The E2B-shaped synthetic projector matched to `model`, written beside it when missing."""
    found = sorted(model.parent.glob(f"mmproj-{model.stem}*.gguf"))
    if found:
        return found[0]
    progress(f"writing the E2B-shaped projector for {model.name}")
    subprocess.run(
        [sys.executable, "-m", "tools.synthetic_mmproj", "--text-model", str(model), "--out", str(model.parent),
         "--shape", "e2b"],
        check=True, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    return sorted(model.parent.glob(f"mmproj-{model.stem}*.gguf"))[0]


class Chat:
    """Two questions, the first perhaps with the image; answers kept as the same short text."""

    def __init__(self, engine: LlamaEngine, reader: ImageReader, image: StoredImage | None) -> None:
        self.engine, self.reader, self.image = engine, reader, image
        self.history: list[ChatMessage] = []

    def pixels(self, key: str) -> Any:
        assert self.image is not None and key == self.image.key
        return self.reader.pixels(self.image.data, PIXELS_SIDE)

    def ask(self, question: str) -> dict[str, Any]:
        images = (self.image.key,) if self.image is not None and not self.history else ()
        self.history.append(ChatMessage("user", question, images=images))
        first: list[float] = []
        events = TurnEvents(text=lambda _p: first.append(first[0] if first else time.perf_counter()))
        request = TurnRequest(
            len(self.history), tuple(self.history), sampling=SAMPLING,
            images=(self.image,) if self.image is not None else (), pixels=self.pixels,
        )  # fmt: skip
        asked = time.perf_counter()
        result = run_turn(self.engine, request, events)
        ended = time.perf_counter()
        self.history.append(ChatMessage("assistant", KEPT_ANSWER))
        return {
            "prompt_tokens": result.stats.prompt_tokens,
            "evaluated": result.stats.prompt_evaluated,
            "ttft_ms": round(((first[0] if first else ended) - asked) * 1000, 1),
        }


def conversation(engine: LlamaEngine, reader: ImageReader, image: StoredImage | None) -> list[dict[str, Any]]:
    engine.forget_cache()
    chat = Chat(engine, reader, image)
    return [chat.ask(q) for q in QUESTIONS]


def encode_times(
    model: Path, projector: Path, threads: int, reader: ImageReader, image: StoredImage
) -> list[dict[str, Any]]:
    rows = []
    for tokens in DETAILS:
        engine = LlamaEngine()
        engine.load(model, LoadOptions(n_ctx=CONTEXT, n_threads=threads, projector=str(projector), image_tokens=tokens))
        vision = engine.vision
        assert vision is not None
        runs = []
        for _ in range(2):  # the second run: warm caches
            conversation_one = Chat(engine, reader, image)
            engine.forget_cache()
            conversation_one.ask(QUESTIONS[0])
            assert vision.last_read is not None
            runs.append(vision.last_read)
        best = min(runs, key=lambda r: r.encode_ms)
        rows.append({"detail": tokens, "image_tokens": best.tokens, "encode_ms": round(best.encode_ms, 1),
                     "read_ms": round(best.decode_ms, 1)})  # fmt: skip
        progress(f"detail {tokens}: {rows[-1]}")
        engine.unload()
    return rows


def peak_rss(model: Path, projector: Path | None, threads: int) -> dict[str, Any]:
    """A child process's peak RSS after loading and one answer (about the image, with the projector)."""
    command = [sys.executable, __file__, "--rss-child", str(model), "--threads", str(threads)]
    if projector is not None:
        command += ["--projector", str(projector)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def rss_child(model: Path, projector: Path | None, threads: int) -> None:
    engine = LlamaEngine()
    options = LoadOptions(n_ctx=CONTEXT, n_threads=threads, projector=str(projector) if projector else "")
    engine.load(model, options)
    with ImageReader() as reader:
        image = StoredImage.of(reader.prepare(photo(), "photo.png")) if projector else None
        Chat(engine, reader, image).ask(QUESTIONS[0])
    compute = sum(mib for label, mib in engine.vision.buffers if label.endswith("compute")) if engine.vision else 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    now = psutil.Process().memory_info().rss  # after the answer: what the projector and the image keep
    print(json.dumps({"peak_rss_mib": round(peak / 2**20, 1), "rss_after_mib": round(now / 2**20, 1),
                      "projector_compute_mib": compute}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=E2B)
    parser.add_argument("--projector", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-only", action="store_true", help="only the peak and steady RSS, with and without")
    parser.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.projector, args.threads)
        return
    if not args.model.exists():
        sys.exit(
            f"{args.model} is missing: python -m tools.synthetic_gemma e2b --quant Q4_K_M --out {args.model.parent}"
        )
    projector = args.projector or ensure_projector(args.model)
    if args.memory_only:
        print(json.dumps({"model": args.model.name, "projector": projector.name, **memory(args, projector)}, indent=1))
        return
    with ImageReader() as reader:
        image = StoredImage.of(reader.prepare(photo(), "photo.png"))
        encode = encode_times(args.model, projector, args.threads, reader, image)
        engine = LlamaEngine()
        engine.load(args.model, LoadOptions(n_ctx=CONTEXT, n_threads=args.threads, projector=str(projector)))
        runs = []
        for run in range(args.repeat):
            with_image = conversation(engine, reader, image)
            without = conversation(engine, reader, None)
            runs.append({"with_image": with_image, "without_image": without,
                         "follow_up_ratio": round(with_image[1]["ttft_ms"] / without[1]["ttft_ms"], 3)})  # fmt: skip
            progress(f"run {run + 1}: {runs[-1]}")
        loaded = engine.loaded
        assert loaded is not None
        image_tokens = loaded.image_tokens
        engine.unload()
    first_ratio = statistics.median(r["with_image"][0]["ttft_ms"] / r["without_image"][0]["ttft_ms"] for r in runs)
    print(json.dumps({
        "model": args.model.name,
        "projector": projector.name,
        "projector_mib": round(projector.stat().st_size / 2**20, 1),
        "threads": args.threads,
        "image": "2048 x 1536 PNG",
        "default_image_tokens": image_tokens,
        "encode": encode,
        "runs": runs,
        "first_ttft_ms_with_image": statistics.median(r["with_image"][0]["ttft_ms"] for r in runs),
        "first_ttft_ms_without_image": statistics.median(r["without_image"][0]["ttft_ms"] for r in runs),
        "first_ratio": round(first_ratio, 3),
        "follow_up_ttft_ms_with_image": statistics.median(r["with_image"][1]["ttft_ms"] for r in runs),
        "follow_up_ttft_ms_without_image": statistics.median(r["without_image"][1]["ttft_ms"] for r in runs),
        "follow_up_ratio": statistics.median(r["follow_up_ratio"] for r in runs),
        "follow_up_goal": 1.3,
        **memory(args, projector),
    }, indent=1))  # fmt: skip


def memory(args: argparse.Namespace, projector: Path) -> dict[str, Any]:
    """Peak and steady RSS of a child without the projector and with it, against the projector's allowance."""
    without = peak_rss(args.model, None, args.threads)
    with_it = peak_rss(args.model, projector, args.threads)
    allowance = projector.stat().st_size / 2**20 + with_it["projector_compute_mib"]
    added_peak = with_it["peak_rss_mib"] - without["peak_rss_mib"]
    added_after = with_it["rss_after_mib"] - without["rss_after_mib"]
    return {
        "rss_mib": {"peak_without_projector": without["peak_rss_mib"], "peak_with_projector": with_it["peak_rss_mib"],
                    "after_without_projector": without["rss_after_mib"],
                    "after_with_projector": with_it["rss_after_mib"],
                    "projector_file_plus_compute": round(allowance, 1),
                    "projector_compute": with_it["projector_compute_mib"],
                    "added_to_peak": round(added_peak, 1), "added_after": round(added_after, 1),
                    "added_to_peak_over_allowance": round(added_peak / allowance, 3),
                    "added_after_over_allowance": round(added_after / allowance, 3)},
    }  # fmt: skip


if __name__ == "__main__":
    main()
