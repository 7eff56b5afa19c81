"""Download one option in a separate process (so a test can kill it part-way): argv = endpoint models_dir repo label."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from model_store.downloads import ModelDownloader  # noqa: E402
from model_store.hub import HubClient  # noqa: E402
from model_store.registry import ModelRegistry  # noqa: E402

if __name__ == "__main__":
    endpoint, models_dir, repo, label = sys.argv[1:5]
    option = next(o for o in HubClient(endpoint=endpoint).details(repo).options if o.label == label)
    downloader = ModelDownloader(Path(models_dir), ModelRegistry(Path(models_dir) / "models.json"), endpoint=endpoint)
    downloader.download(option, progress=lambda p: print(f"progress {p.done_bytes} {p.total_bytes}", flush=True))
    print("done", flush=True)
