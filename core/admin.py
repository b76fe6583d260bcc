"""Admin commands: create projects and API keys (the key is printed once, never stored).

python -m core.admin create-project NAME
python -m core.admin create-key PROJECT_NAME [--name LABEL]
python -m core.admin revoke-key KEY_ID
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy import select

from core.db import make_engine, make_sessionmaker
from core.keys import create_key, create_project
from core.settings import get_settings
from core.tables import ApiKey, Project, utcnow


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.admin", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    project = commands.add_parser("create-project", help="create a project and its first key")
    project.add_argument("name")
    key = commands.add_parser("create-key", help="create another key for a project")
    key.add_argument("project")
    key.add_argument("--name", default="")
    revoke = commands.add_parser("revoke-key", help="revoke a key by its id (key_...)")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)

    factory = make_sessionmaker(make_engine(get_settings()))
    with factory() as session, session.begin():
        if args.command == "create-project":
            if session.scalar(select(Project).where(Project.name == args.name)):
                print(f"project {args.name!r} exists; use create-key", file=sys.stderr)
                return 1
            created = create_key(session, create_project(session, args.name), name="first key")
        elif args.command == "create-key":
            found = session.scalar(select(Project).where(Project.name == args.project))
            if found is None:
                print(f"no project named {args.project!r}", file=sys.stderr)
                return 1
            created = create_key(session, found, name=args.name)
        else:
            record = session.get(ApiKey, args.key_id)
            if record is None:
                print(f"no key {args.key_id!r}", file=sys.stderr)
                return 1
            record.revoked_at = utcnow()
            print(f"revoked {args.key_id}")
            return 0
    print(f"project: {created.project_id}\nkey id:  {created.key_id}\napi key: {created.key}")
    print("(shown once: only its hash is stored)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
