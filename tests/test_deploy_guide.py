"""docs/deploy.md and the files it installs from the repository stay in step
(docs/deploy/rehearse.sh runs the whole guide; this is the fast part of it)."""

from __future__ import annotations

import re
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
GUIDE = (REPOSITORY / "docs" / "deploy.md").read_text()


def run_blocks() -> list[str]:
    """The blocks the rehearsal runs: fenced ```sh exactly (not ```sh alternative)."""
    return re.findall(r"^```sh\n(.*?)^```$", GUIDE, re.MULTILINE | re.DOTALL)


def test_every_repository_file_the_guide_installs_exists() -> None:
    named = set(re.findall(r"/path/to/quartchat/([\w./@-]+)", "\n".join(run_blocks())))
    assert named >= {"nginx.conf", "docs/deploy/nginx-site.conf", "docs/deploy/quartchat@.service"}
    for relative in named:
        assert (REPOSITORY / relative).is_file(), f"docs/deploy.md installs {relative}, which is not in the repository"


def test_no_command_of_the_guide_needs_sudo_or_reads_the_env_file_with_cat() -> None:
    commands = "\n".join(run_blocks() + re.findall(r"^```sh alternative\n(.*?)^```$", GUIDE, re.MULTILINE | re.DOTALL))
    assert "sudo " not in commands, "Debian with a root password has no sudo: runuser"
    assert "$(cat /etc/quartchat/quartchat.env)" not in commands, "its comment lines would become words"
    assert "--standalone" not in commands, "nginx holds port 80 by then"


def test_the_unit_starts_after_postgresql_and_redis_and_binds_its_instance_port() -> None:
    unit = (REPOSITORY / "docs" / "deploy" / "quartchat@.service").read_text()
    after = re.search(r"^After=(.*)$", unit, re.MULTILINE)
    assert after is not None and {"postgresql.service", "redis-server.service"} <= set(after[1].split())
    assert "--bind 127.0.0.1:%i" in unit
