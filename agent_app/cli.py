"""`agent-app serve | worker | devllm`: one entry point for the one image."""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn
import uvloop

from agent_app.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "serve", help="run the HTTP API (AGENT_PORT, default 8080; metrics on AGENT_METRICS_PORT)"
    )
    sub.add_parser("worker", help="run a queue worker (probes on AGENT_WORKER_PORT, default 8081)")
    dlq = sub.add_parser(
        "dlq", help="list, inspect and replay dead-lettered tasks (JSON lines on stdout)"
    )
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_sub.add_parser("list", help="dead-lettered tasks, oldest first")
    listing.add_argument("--tenant", help="only this tenant's")
    listing.add_argument("--limit", type=int, help="at most this many")
    show = dlq_sub.add_parser("show", help="a task's dead-letter entries and its record")
    show.add_argument("task_id")
    replay = dlq_sub.add_parser("replay", help="queue dead-lettered tasks again")
    replay.add_argument("task_ids", nargs="*", metavar="task_id")
    replay.add_argument("--all", action="store_true", help="every dead-lettered task")
    replay.add_argument("--tenant", help="with --all: only this tenant's")
    dev = sub.add_parser("devllm", help="run the deterministic development LLM stand-in")
    # Defaults from the environment, so the same image runs it in a pod without flags.
    dev.add_argument("--host", default=os.environ.get("AGENT_DEVLLM_HOST", "0.0.0.0"))  # noqa: S104
    dev.add_argument("--port", type=int, default=int(os.environ.get("AGENT_DEVLLM_PORT", "8000")))
    dev.add_argument("--latency-ms", type=int, default=0, help="added to every response")
    dev.add_argument("--error-every", type=int, default=0, help="every Nth request gets a 500")
    dev.add_argument("--timeout-every", type=int, default=0, help="every Nth request hangs")
    args = parser.parse_args(argv)

    if args.command == "devllm":
        from agent_app.devllm import create_app as devllm_app

        uvicorn.run(
            devllm_app(args.latency_ms, args.error_every, args.timeout_every),
            host=args.host,
            port=args.port,
            log_level="warning",
        )
        return 0
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"agent-app {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command == "dlq":
        from agent_app.dlqcli import run_dlq

        return uvloop.run(run_dlq(settings, args))
    if args.command == "serve":
        from agent_app.api import serve_api

        try:
            uvloop.run(serve_api(settings))
        except SettingsError as exc:  # a configured part that cannot be had, e.g. a model
            print(f"agent-app {args.command}: {exc}", file=sys.stderr)
            return 2
        return 0
    from agent_app.worker import serve_worker

    uvloop.run(serve_worker(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
