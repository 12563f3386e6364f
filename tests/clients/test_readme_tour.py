"""Runs the README's tour, command by command, against a real `waterline serve`: the README's
promises stay true. The only changes are the ones a reader on this machine would make: the
config file's listen and advertised ports become a free port (the tools find it through
WATERLINE_BOOTSTRAP_SERVER; kcat's address is rewritten), the commands run in a temp dir (the
config's data dir is relative to it) with the per-user data dir (backups) inside it,
the kcat group member runs in the background until the tour's `kill %1`, `lag --watch` runs for
a few seconds, and the backup file printed by `--execute` stands in for BACKUP.csv."""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from harness import waterline_bin

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_lines():
    text = README.read_text()
    section = text.split("## A short tour", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    return block.strip("\n").splitlines()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_tour(tmp_path):
    lines = tour_lines()
    port = free_port()
    addr = f"127.0.0.1:{port}"
    # Backups go to the per-user data dir: keep it inside the test's directory.
    env = dict(os.environ, WATERLINE_BOOTSTRAP_SERVER=addr, RUST_LOG="warn",
               XDG_DATA_HOME=str(tmp_path / "xdg"))
    env.pop("WATERLINE_BACKUP_DIR", None)
    binary = waterline_bin()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "waterline").symlink_to(binary)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    broker = None
    member = None
    backup = None
    ran = []
    i = 0
    try:
        while i < len(lines):
            line = lines[i].strip()
            i += 1
            if not line or line.startswith("#"):
                continue
            heredoc = re.match(r"cat > (\S+) <<'(\w+)'$", line)
            if heredoc:
                name, end = heredoc.groups()
                body = []
                while lines[i].strip() != end:
                    body.append(lines[i])
                    i += 1
                i += 1
                text = "\n".join(body) + "\n"
                # Only the port moves (to a free one); hosts and the data dir are the README's,
                # so a data dir that needs root or an advertised name that does not resolve
                # fails here as it would for a reader.
                data_dir = re.search(r'^data_dir = "(.*)"', text, flags=re.M).group(1)
                assert not os.path.isabs(data_dir), (
                    f"the sample config's data_dir {data_dir} must not need root")
                text = re.sub(r'^(listen|advertised) = "(.*):9092"',
                              lambda m: f'{m.group(1)} = "{m.group(2)}:{port}"', text, flags=re.M)
                (tmp_path / name).write_text(text)
                ran.append(line)
                continue
            # Trailing comments explain; they are not part of the command.
            command = re.sub(r"\s+#\s.*$", "", line).replace("127.0.0.1:9092", addr)
            if backup:
                command = command.replace("BACKUP.csv", backup)
            if command.startswith("waterline serve") and "--help" not in command:
                broker = subprocess.Popen(
                    ["bash", "-c", command], cwd=tmp_path, env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                    start_new_session=True,
                )
                ready = broker.stdout.readline()
                assert ready.startswith("waterline: ready on"), ready
                ran.append(command)
                continue
            if command.endswith("&"):
                # A background job (the kcat group member): it runs until `kill %1`.
                member = subprocess.Popen(
                    ["bash", "-c", command.rstrip("&").strip()], cwd=tmp_path, env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                time.sleep(8)  # joins (3 s initial rebalance delay) and reads a, b, c
                ran.append(command)
                continue
            if command == "kill %1":
                # kcat leaves the group cleanly on SIGINT, committing what it read.
                os.killpg(member.pid, signal.SIGINT)
                member.wait(timeout=30)
                member = None
                ran.append(command)
                continue
            if "--watch" in command:
                p = subprocess.Popen(
                    ["bash", "-c", command], cwd=tmp_path, env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    start_new_session=True,
                )
                time.sleep(4)
                os.killpg(p.pid, signal.SIGINT)
                out, err = p.communicate(timeout=30)
                assert "billing" in out or "events" in out, (command, out, err)
                ran.append(command)
                continue
            r = subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, env=env,
                capture_output=True, text=True, timeout=120,
            )
            assert r.returncode == 0, (command, r.stdout, r.stderr)
            m = re.search(r"restore with: .* --from-file (\S+) --execute", r.stdout + r.stderr)
            if m:
                backup = m.group(1)
            ran.append(command)
        # Everything the tour says was run, and its effects are there.
        assert any(c.startswith("waterline serve") for c in ran)
        assert backup, "an --execute printed its backup file and the undo"
        exported = (tmp_path / "billing.csv").read_text()
        assert "events" in exported, exported
        topics = subprocess.run(
            [binary, "topics", "describe", "--topic", "profiles"], env=env,
            capture_output=True, text=True, timeout=60,
        )
        assert "cleanup.policy" in topics.stdout and "12" in topics.stdout, topics.stdout
    finally:
        if member is not None:
            os.killpg(member.pid, signal.SIGKILL)
            member.wait(timeout=30)
        if broker is not None:
            os.killpg(broker.pid, signal.SIGTERM)
            assert broker.wait(timeout=30) == 0
