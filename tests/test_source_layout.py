"""The csrc/ map (csrc/README.md) holds: the architecture-neutral core includes no architecture folder and no host
dispatch, an architecture folder includes no other architecture, host dispatch includes no kernel, and only the
binding includes torch. CPU only: reads the sources as text."""

import re
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parent.parent / "csrc"
FLASH = CSRC / "flash"
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
ARCH_FOLDERS = ("sm80", "sm90")


def _includes(path: Path) -> list[Path]:
    """The repo headers a file includes, resolved against its folder and csrc/ (the include path)."""
    out = []
    for name in INCLUDE_RE.findall(path.read_text()):
        for base in (path.parent, CSRC):
            target = (base / name).resolve()
            if target.exists():
                out.append(target)
                break
        else:
            raise AssertionError(f"{path.relative_to(CSRC)} includes {name!r}, which is not under csrc/")
    return out


def _folder(target: Path) -> str:
    rel = target.relative_to(CSRC.resolve())
    return rel.parts[1] if rel.parts[0] == "flash" and len(rel.parts) > 2 else rel.parts[0]


def _headers(folder: str) -> list[Path]:
    return sorted((FLASH / folder).glob("*.h"))


def test_folders_exist_with_readme():
    for folder in ("core", "host", *ARCH_FOLDERS):
        assert (FLASH / folder / "README.md").is_file(), folder
    assert not list(FLASH.glob("*.h")), "headers belong in a role folder (csrc/README.md)"


@pytest.mark.parametrize("header", _headers("core"), ids=lambda p: p.name)
def test_core_includes_only_core(header):
    bad = [t for t in _includes(header) if _folder(t) != "core"]
    assert not bad, f"core/{header.name} includes {[str(t.relative_to(CSRC.resolve())) for t in bad]}"


@pytest.mark.parametrize("arch", ARCH_FOLDERS)
def test_arch_folder_includes_core_and_itself(arch):
    for header in _headers(arch):
        bad = [t for t in _includes(header) if _folder(t) not in ("core", arch)]
        assert not bad, f"{arch}/{header.name} includes {[str(t.relative_to(CSRC.resolve())) for t in bad]}"


@pytest.mark.parametrize("header", _headers("host"), ids=lambda p: p.name)
def test_host_includes_no_kernel(header):
    for t in _includes(header):
        folder = _folder(t)
        assert folder in ("core", "host") or (folder in ARCH_FOLDERS and t.name.endswith("_config.h")), (
            f"host/{header.name} includes {t.relative_to(CSRC.resolve())}: host code may use an architecture's "
            "tile tables (*_config.h), never its kernels"
        )


def test_only_the_binding_includes_torch():
    for path in list(CSRC.rglob("*.h")) + list(CSRC.rglob("*.cu")):
        assert not re.search(r"#\s*include\s*<(torch|ATen|c10)/", path.read_text()), path


def test_instantiations_include_their_own_architecture():
    for arch_dir in (CSRC / "instantiations").glob("sm*"):
        if not arch_dir.is_dir():
            continue
        for path in arch_dir.glob("*.cu"):
            assert all(_folder(t) == arch_dir.name for t in _includes(path)), path
