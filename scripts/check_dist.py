"""Check the wheel and the sdist in DIST_DIR against the checkout: python scripts/check_dist.py DIST_DIR

Fails (exit 1, one line per problem) when a file of the package (any file
under django_sse/ that git tracks or would track, Python or not) is missing
from the wheel or the sdist, when either holds a file the package does not
have, or when a version number disagrees with ``django_sse.__version__``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
PACKAGE = "django_sse"


def package_files() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", PACKAGE],
        cwd=TOP,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return {name for name in listed if (TOP / name).is_file()}


def source_version() -> str:
    tree = ast.parse((TOP / PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__version__" for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise SystemExit(f"{PACKAGE}/__init__.py has no __version__")


def check(dist_dir: Path) -> list[str]:
    problems = []
    version = source_version()
    expected = package_files()
    wheels = sorted(dist_dir.glob("django_sse-*.whl"))
    sdists = sorted(dist_dir.glob("django_sse-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [f"expected one wheel and one sdist in {dist_dir}, found {wheels + sdists}"]
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        metadata_name = next(name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(wheel.read(metadata_name).decode())
    in_wheel = {name for name in names if name.startswith(PACKAGE + "/")}
    problems += [f"wheel lacks {name}" for name in sorted(expected - in_wheel)]
    problems += [
        f"wheel holds {name}, which the package lacks" for name in sorted(in_wheel - expected)
    ]
    if metadata["Version"] != version:
        problems.append(f"wheel version {metadata['Version']} != __version__ {version}")
    if not metadata.get_all("Requires-Dist"):
        problems.append("wheel metadata has no Requires-Dist")
    with tarfile.open(sdists[0]) as sdist:
        root = f"django_sse-{version}/"
        in_sdist = {
            member.name[len(root) :]
            for member in sdist.getmembers()
            if member.isfile() and member.name.startswith(root + PACKAGE + "/")
        }
        if not any(member.name == root + "PKG-INFO" for member in sdist.getmembers()):
            problems.append(f"sdist has no {root}PKG-INFO (version mismatch?)")
    problems += [f"sdist lacks {name}" for name in sorted(expected - in_sdist)]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    problems = check(Path(argv[1]))
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_dist: wheel and sdist hold all {len(package_files())} files of {PACKAGE}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
