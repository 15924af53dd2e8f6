"""Command line: `comfy-gateway [serve]`, `keys create|list|revoke`, `check`, `cleanup`, `generate`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence

from aiohttp import web

from gateway import logs
from gateway.api.auth import create_key
from gateway.app import create_app, open_outputs, open_store
from gateway.errors import ConfigError
from gateway.models import MAX_PRIORITY
from gateway.outputs import ReferenceStore
from gateway.retention import sweep
from gateway.sdk.cli import add_generate_command, run_generate
from gateway.settings import Settings


def _key_priority(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, not {raw!r}") from None
    if not 0 <= value <= MAX_PRIORITY:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_PRIORITY}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="comfy-gateway", description="A durable REST API in front of ComfyUI.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gateway (the default)")
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True)
    create.add_argument("--max-priority", type=_key_priority, default=None, metavar="N",
                        help=f"highest job priority (0-{MAX_PRIORITY}) the key may ask for "
                             "(default: GATEWAY_MAX_PRIORITY)")
    keys.add_parser("list", help="list keys (never the keys themselves)")
    revoke = keys.add_parser("revoke", help="revoke keys by id or name")
    revoke.add_argument("key", metavar="ID_OR_NAME")
    check = sub.add_parser("check", help="validate presets.yaml and workflows (and against ComfyUI if it answers)")
    check.add_argument("--offline", action="store_true", help="do not ask ComfyUI")
    cleanup = sub.add_parser("cleanup", help="remove unsaved result images older than some days")
    cleanup.add_argument("--older-than", type=float, metavar="DAYS",
                         help="age in days (default: GATEWAY_RETENTION_DAYS)")
    cleanup.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    add_generate_command(sub)
    return parser


def serve(settings: Settings) -> None:
    app = create_app(settings)
    logging.getLogger("gateway").info("listening on http://%s:%d (ComfyUI at %s)",
                                      settings.host, settings.port, settings.comfyui_url)
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)


async def _keys(settings: Settings, args: argparse.Namespace) -> int:
    store = await open_store(settings)
    try:
        if args.keys_command == "create":
            row, key = await create_key(store, args.name, max_priority=args.max_priority)
            print(f"Created key {row.id} ({row.name}). It is shown only this once:\n{key}")
        elif args.keys_command == "list":
            rows = await store.list_keys()
            if not rows:
                print("no keys")
            for row in rows:
                state = "revoked " + time.strftime("%Y-%m-%d %H:%M", time.localtime(row.revoked_at)) \
                    if row.revoked_at else "active"
                created = time.strftime("%Y-%m-%d %H:%M", time.localtime(row.created_at))
                priority = "default" if row.max_priority is None else str(row.max_priority)
                print(f"{row.id}  {row.name:<20}  created {created}  max priority {priority:<7}  {state}")
        else:
            count = await store.revoke_key(args.key, time.time())
            if not count:
                print(f"no active key with id or name {args.key!r}", file=sys.stderr)
                return 1
            print(f"revoked {count} key(s)")
    finally:
        await store.close()
    return 0


async def _cleanup(settings: Settings, args: argparse.Namespace) -> int:
    days = args.older_than if args.older_than is not None else settings.retention_days
    if not days or days < 0:
        print("comfy-gateway cleanup: give --older-than DAYS (more than 0) or set GATEWAY_RETENTION_DAYS",
              file=sys.stderr)
        return 2
    store = await open_store(settings)
    try:
        with open_outputs(settings) as outputs:
            swept = await sweep(outputs=outputs, references=ReferenceStore(settings.references_dir), store=store,
                                older_than_days=days, dry_run=args.dry_run)
    finally:
        await store.close()
    verb = "would remove" if args.dry_run else "removed"
    for location in swept.locations:
        print(f"{verb} {location}")
    print(f"{verb} {len(swept.locations)} file(s), {swept.bytes} bytes, older than {days:g} day(s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "generate":  # a client of some gateway: this one's settings do not apply
        return run_generate(args)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"comfy-gateway: {exc.message}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    try:
        if args.command == "keys":
            return asyncio.run(_keys(settings, args))
        if args.command == "cleanup":
            return asyncio.run(_cleanup(settings, args))
        if args.command == "check":
            from gateway.check import run_check

            return asyncio.run(run_check(settings, offline=args.offline))
        serve(settings)
    except ConfigError as exc:
        print(f"comfy-gateway: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
