"""Hearth: chat with language models on your own computer.

Parses arguments, configures logging, builds the objects and wires them, then
runs the window (or the headless self-test, or ``serve``: the API server without a window).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import logging.handlers
import os
import sys
from pathlib import Path

from model_store.builtin_model import ensure_builtin_model, packaged_gemma_chunks
from model_store.paths import AppPaths
from model_store.registry import ModelRegistry
from model_store.settings import SettingsStore
from inference.session import ModelChoice

log = logging.getLogger("hearth")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hearth", description="Chat with language models on your own computer.")
    parser.add_argument("--model", type=Path, help="a GGUF model file to use instead of the default model")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="load the model without a window, generate a few tokens, print one JSON line and exit",
    )
    parser.add_argument(
        "--tokens", type=int, default=None, metavar="N",
        help="with --self-test: generate exactly N tokens, past the model's end (like llama-bench's tg128)",
    )
    parser.add_argument(
        "--cpu-variant", default=os.environ.get("HEARTH_CPU_VARIANT"), metavar="NAME",
        help="with --self-test: run llama.cpp's CPU kernels NAME (e.g. haswell, x64) instead of the best for this CPU",
    )
    parser.add_argument(
        "--home", type=Path, default=os.environ.get("HEARTH_HOME"),
        help="keep all of Hearth's files below this folder (default: the usual per-user folders)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="serve the model to other programs on this computer (an OpenAI-compatible API), without a window",
        description="Serve the model through an OpenAI-compatible API (/v1/chat/completions, /v1/models), "
                    "without a window. Every request needs the API token: HEARTH_API_TOKEN when it is set, "
                    "else the one in Settings > Local API server (kept in your system's keyring).",
    )
    serve.add_argument("--host", default=None,
                       help="the address to listen on (default: Settings, else 127.0.0.1: this computer only)")
    serve.add_argument("--port", type=int, default=None,
                       help="the port (default: Settings, else 8765; 0: any free one)")
    # Also accepted after "serve"; SUPPRESS keeps a value given before it.
    serve.add_argument("--model", type=Path, default=argparse.SUPPRESS, help="a GGUF model file to serve")
    serve.add_argument("--home", type=Path, default=argparse.SUPPRESS, help="as above")
    return parser.parse_args(argv)


def configure_logging(log_dir: Path) -> None:
    """Log to a rotating file in the user's log folder. Prompts, replies and secrets are never logged."""
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        log_dir / "hearth.log", maxBytes=2_000_000, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(handler)


@contextlib.contextmanager
def output_to_log(log_file: Path):
    """Send whatever is written to stdout and stderr meanwhile to ``log_file``, at the file-descriptor level.

    The self-test's stdout must be its one JSON line. llama.cpp prints from C,
    and the engine process (which inherits these descriptors) may print a
    Python traceback before it reports the error as a sentence: all of that
    belongs in the log, not on the user's terminal.
    """
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no console at all (a windowed app): nothing to keep clean
        yield
        return
    try:
        with open(log_file, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in saved:
            os.close(descriptor)


def model_chooser(paths: AppPaths, registry: ModelRegistry, model_file: Path | None):
    """A function that returns the model to open: ``model_file``, or the registered default.

    It may copy and hash the built-in model on first use, so it is called off the GUI thread.
    ``registry`` is the one the window uses too: one list of models, one writer of models.json.
    """

    def choose() -> ModelChoice:
        if model_file is not None:
            return ModelChoice(path=model_file)
        builtin = ensure_builtin_model(registry, paths.models_dir, packaged_gemma_chunks())
        default = registry.default() if registry.all() else builtin
        return ModelChoice(path=default.path, display_name=default.display_name, is_demo=default.is_demo)

    return choose


NETWORK_WARNING = ("Warning: {host} is not this computer's loopback address: anyone on your network who gets "
                   "the token can use the model (and your computer's time) through this server.")


def serve(args: argparse.Namespace, paths: AppPaths, choose_model, settings: SettingsStore) -> int:
    """``hearth serve``: load the model and answer API requests until Ctrl+C. Never imports Qt or torch.

    Prints where it listens and where the token comes from, never the token itself.
    """
    import signal

    from gui.messages import describe_error  # Qt-free: sentences for people
    from gui.preferences import engine_preferences, sampling_params  # Qt-free helpers
    from inference.api import ServerConfig, is_loopback_host
    from inference.api.errors import ServerStartError
    from inference.api.server import ApiServer
    from inference.hardware import probe_hardware
    from inference.model_owner import LoadRequest, ModelOwner
    from model_store.api_token import TOKEN_ENV, ApiTokenStore, token_from_env

    saved = settings.load()
    host = args.host if args.host is not None else saved.api_host
    port = args.port if args.port is not None else saved.api_port
    token = token_from_env()
    if token is not None:
        where = f"the token is the value of {TOKEN_ENV}"
    else:
        tokens = ApiTokenStore()
        if not tokens.persistent:
            print(f"{tokens.problem} Set {TOKEN_ENV} to the token clients will send, then start again.",
                  file=sys.stderr)
            return 2
        token = tokens.token()
        where = (f"the token is the one shown in Hearth's Settings > Local API server (kept in your keyring); "
                 f"set {TOKEN_ENV} to use another")
    if not is_loopback_host(host):
        print(NETWORK_WARNING.format(host=host), file=sys.stderr, flush=True)

    def terminate(signum, frame) -> None:
        raise SystemExit(0)  # so that the model is freed and its process ended on the way out

    signal.signal(signal.SIGTERM, terminate)
    owner = ModelOwner(choose_model, probe_hardware, paths.cache_dir)
    owner.start()
    try:
        owner.load(LoadRequest(choice=None, prefs=engine_preferences(saved),
                               state_cache_bytes=saved.state_cache_mb << 20))
        print("Loading the model…", flush=True)
        try:
            ready = owner.wait_for_model(timeout_s=24 * 3600)
            server = ApiServer(owner, ServerConfig(token=token, host=host, port=port, sampling=sampling_params(saved)))
            server.listen()
        except ServerStartError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        except Exception as exc:  # noqa: BLE001 - a model that cannot be loaded: say why
            print(f"The model could not be loaded: {describe_error(exc)}", file=sys.stderr)
            return 1
        log.info("Serving %s on %s", ready.model_id, server.url)
        print(f"Serving {ready.display_name} as model \"{ready.model_id}\" on {server.url}", flush=True)
        print(f"Clients send 'Authorization: Bearer <token>'; {where}. Press Ctrl+C to stop.", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        owner.stop()
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--probe-gpus"]:  # the frozen app's GPU probe process (inference/hardware.py)
        from inference.gpu_probe import main as probe_gpus

        return probe_gpus()
    args = parse_args(argv)
    paths = AppPaths.under(args.home) if args.home else AppPaths.for_current_user()
    paths.create()
    configure_logging(paths.log_dir)
    registry = ModelRegistry(paths.registry_file)  # the only one: choose_model and the window share it
    choose_model = model_chooser(paths, registry, args.model)

    from inference.hardware import probe_hardware

    settings = SettingsStore(paths.settings_file)
    if args.command == "serve":
        return serve(args, paths, choose_model, settings)
    if args.self_test:
        from gui.messages import describe_error  # Qt-free: sentences for people
        from gui.preferences import engine_preferences  # Qt-free helper
        from inference.self_test import run_self_test

        with output_to_log(paths.log_dir / "hearth.log"):
            result = run_self_test(
                choose_model, probe_hardware, engine_preferences(settings.load()), paths.cache_dir,
                exact_tokens=args.tokens, cpu_variant=args.cpu_variant, describe_error=describe_error,
            )
        print(json.dumps(result), flush=True)
        return 0 if result["ok"] else 1

    from gui.app import ModelServices, run_app
    from model_store.credentials import TokenStore
    from model_store.api_token import ApiTokenStore
    from model_store.downloads import ModelDownloader
    from model_store.hub import DEFAULT_ENDPOINT, HubClient
    from model_store.providers import ProviderStore

    endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT)
    tokens = TokenStore()
    tokens.preload()  # keyring takes ~0.3 s to import and probe: not on the way to the window
    models = ModelServices(
        hub=HubClient(endpoint=endpoint, token=tokens.get),
        downloader=ModelDownloader(paths.models_dir, registry, endpoint=endpoint, token=tokens.get),
        registry=registry,
        tokens=tokens,
        models_dir=paths.models_dir,
    )
    return run_app(
        choose_model=choose_model,
        probe_hardware=probe_hardware,
        settings=settings,
        conversations_file=paths.conversations_file,
        cache_dir=paths.cache_dir,
        models=models,
        providers=ProviderStore(paths.providers_file),
        api_tokens=ApiTokenStore(),
        documents_file=paths.data_dir / "documents.db",
        find_embedder=lambda: installed_embedder(registry),
    )


def installed_embedder(registry: ModelRegistry):
    """An installed GGUF embedding model, ready to embed (its process starts on first use), or None."""
    from inference.embeddings import LlamaEmbedder, first_embedding_model

    path = first_embedding_model(model.path for model in registry.all() if model.path.exists())
    return LlamaEmbedder(path) if path is not None else None


if __name__ == "__main__":
    # In the frozen app the engine's spawned process starts this same executable: let it become the engine.
    import multiprocessing

    multiprocessing.freeze_support()
    sys.exit(main(sys.argv[1:]))
