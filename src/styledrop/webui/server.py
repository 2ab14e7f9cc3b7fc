"""`styledrop review`: a local page to pick a round's images (human feedback) and start its training.

A FastAPI app over the same library functions as the CLI: picks go through `feedback.picks.set_pick` (one
image per request, saved at once, under a lock), training through `feedback.rounds.train_from_round` in a
background thread whose progress the page polls.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from ..adapters.config import AdapterConfig
from ..errors import StyleDropError
from ..feedback.picks import read_picks, set_pick
from ..feedback.rounds import (
    ROUND2_ADAPTER,
    SelectConfig,
    by_prompt,
    pool_dir,
    read_manifest,
    train_from_round,
)
from ..fileio import read_json
from ..train import TrainConfig

STATIC = Path(__file__).parent / "static"
MAX_BODY = 16 * 1024  # the page only ever posts one small JSON pick; nothing is uploaded


class Pick(BaseModel):
    file: str
    picked: bool


@dataclass
class Training:
    """What the page shows about round training; one run at a time."""

    state: str = "idle"  # idle | running | done | error
    step: int = 0
    steps: int = 0
    loss: float | None = None
    message: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def view(self) -> dict:
        return {k: getattr(self, k) for k in ("state", "step", "steps", "loss", "message")}


def pool_view(round_dir: Path) -> dict:
    manifest = read_manifest(round_dir)
    scores = round_dir / "scores.json"
    if not scores.is_file():
        raise StyleDropError(f"{round_dir}: the pool is not scored yet (run styledrop refine first)")
    groups = by_prompt(read_json(scores)["images"])
    prompts = [
        {
            "prompt": prompt,
            "images": [{k: r.get(k) for k in ("file", "seed", "text", "style", "leak")} for r in records],
        }
        for prompt, records in groups.items()
    ]
    return {"style": manifest["style"], "source": manifest["source_adapter"], "prompts": prompts}


def create_app(
    round_dir: str | Path, adapter_config: AdapterConfig = ROUND2_ADAPTER, config: TrainConfig = TrainConfig()
):
    round_dir = Path(round_dir)
    view = pool_view(round_dir)  # fails early, with one line, on a folder that is not a scored round
    files = {image["file"] for p in view["prompts"] for image in p["images"]}
    training = Training()
    app = FastAPI(title="styledrop review", docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def small_json_bodies_only(request: Request, call_next):
        """Refuse what the page never sends: bodies without a length, over MAX_BODY, or not JSON."""
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return JSONResponse({"detail": "a Content-Length is required"}, status_code=411)
            if int(length) > MAX_BODY:
                return JSONResponse({"detail": f"request body over {MAX_BODY} bytes"}, status_code=413)
            kind = request.headers.get("content-type", "")
            if int(length) > 0 and not kind.startswith("application/json"):
                return JSONResponse({"detail": "only JSON is accepted"}, status_code=415)
        return await call_next(request)

    def known(file: str) -> str:
        if file not in files:  # also what keeps requests inside the pool folder
            raise HTTPException(404, f"{file}: not in this round's pool")
        return file

    @app.get("/")
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/round")
    def round_info():
        return {**view, "round": str(round_dir), "picks": read_picks(round_dir)}

    @app.get("/api/picks")
    def picks():
        return {"picks": read_picks(round_dir)}

    @app.post("/api/picks")
    def pick(change: Pick):
        return {"picks": set_pick(round_dir, known(change.file), change.picked)}

    @app.get("/pool/{file}")
    def image(file: str):
        return FileResponse(pool_dir(round_dir) / known(file), media_type="image/png")

    @app.get("/api/train")
    def train_status():
        return training.view()

    @app.post("/api/train", status_code=202)
    def train():
        if not read_picks(round_dir):
            raise HTTPException(409, "pick at least one image first")
        with training.lock:
            if training.state == "running":
                raise HTTPException(409, "training is already running")
            training.state, training.step, training.steps, training.loss = "running", 0, config.steps, None
            training.message = ""
        threading.Thread(target=run_training, daemon=True).start()
        return training.view()

    def on_step(step: int, loss: float) -> None:
        training.step, training.loss = step, loss

    def run_training() -> None:
        try:
            result = train_from_round(
                round_dir, SelectConfig("human"), adapter_config, config, progress=False, on_step=on_step
            )
            training.state, training.message = "done", f"adapter saved to {result.adapter}"
        except Exception as e:  # shown on the page; the server keeps running
            training.state, training.message = "error", str(e) or type(e).__name__

    return app


def serve(round_dir: str | Path, host: str = "127.0.0.1", port: int = 7860, **settings) -> None:
    import uvicorn

    app = create_app(round_dir, **settings)
    print(f"reviewing {round_dir} at http://{host}:{port}/ (Ctrl+C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
