"""`.ci/run` installs what the tests use, and the README lists the same packages."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ci_packages() -> set[str]:
    text = (ROOT / ".ci" / "run").read_text()
    body = re.search(r"^PACKAGES=\((.*?)^\)", text, re.S | re.M).group(1)
    return {w for line in body.splitlines() for w in line.split("#")[0].split()}


def readme_packages() -> set[str]:
    text = (ROOT / "README.md").read_text()
    setup = text[text.index("### Set-up"):]
    block = re.search(r"```sh\n(.*?)```", setup, re.S).group(1)
    words = block.replace("\\\n", " ").split()
    assert words[:2] == ["apt-get", "install"]
    return set(words[2:])


def test_readme_lists_what_ci_installs():
    assert ci_packages() == readme_packages()
    assert "apt-get install -y \"${PACKAGES[@]}\"" in (ROOT / ".ci" / "run").read_text()


def test_every_package_a_test_asks_for_is_installed_by_ci():
    asked = set()
    for f in (ROOT / "tests").glob("*.py"):
        asked |= set(re.findall(r"apt-get install ([a-z0-9][a-z0-9.+-]+)", f.read_text()))
    asked.discard("-y")
    assert asked and asked <= ci_packages(), asked - ci_packages()
    # the capture tests that need no download
    assert {"gdb-multiarch", "cpio"} <= ci_packages()
