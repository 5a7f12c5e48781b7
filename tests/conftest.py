"""Shared fixtures, the `slow` marker, and which flash_attn is under test.

Which flash_attn the tests import (printed as the first and the last line of a run):
  * a pip-installed (non-editable) flash_attn, when there is one and the source tree has no in-place build
    (no flash_attn_2_cuda*.so beside setup.py): the repository root is taken off sys.path, so `python -m pytest`
    from the repository root cannot shadow the installed package with ./flash_attn;
  * otherwise the source tree: ./flash_attn with an in-place build (python setup.py build_ext --inplace, or an
    editable install), or unbuilt (the CPU tests run; the GPU tests skip).
FLASH_ATTN_TEST_TARGET=installed|source overrides the choice.
"""

import collections
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE_PACKAGE = REPO_ROOT / "flash_attn"
TARGET_ENV = "FLASH_ATTN_TEST_TARGET"


def _is_repo_root(entry: str) -> bool:
    try:
        return Path(entry or ".").resolve() == REPO_ROOT
    except OSError:
        return False


def _installed_package_dir():
    """The flash_attn directory of a pip-installed, non-editable distribution found off the repository root."""
    search = [p for p in sys.path if not _is_repo_root(p)]
    try:
        for dist in importlib.metadata.distributions(path=search):
            if (dist.metadata["Name"] or "").lower().replace("-", "_") != "flash_attn":
                continue
            package = Path(dist.locate_file("flash_attn"))
            # An editable install keeps no package directory beside its metadata (its files are this tree).
            if (package / "__init__.py").is_file() and package.resolve() != SOURCE_PACKAGE:
                return package
    except Exception:  # unreadable metadata: treat as not installed
        pass
    return None


def _inplace_extension():
    found = sorted(REPO_ROOT.glob("flash_attn_2_cuda*.so")) + sorted(REPO_ROOT.glob("flash_attn_2_cuda*.pyd"))
    return found[0] if found else None


def _choose_target():
    """(target, why, error): 'installed' or 'source'; fixes sys.path so that `import flash_attn` gets it."""
    mode = os.environ.get(TARGET_ENV, "").strip().lower() or "auto"
    installed, inplace = _installed_package_dir(), _inplace_extension()
    if mode not in ("auto", "installed", "source"):
        return "source", "", f"{TARGET_ENV}={mode!r}: expected installed, source or auto"
    if mode == "installed" and installed is None:
        return "source", "", f"{TARGET_ENV}=installed, but no pip-installed (non-editable) flash_attn was found"
    if mode == "installed" or (mode == "auto" and installed is not None and inplace is None):
        sys.path[:] = [p for p in sys.path if not _is_repo_root(p)]
        why = f"{TARGET_ENV}=installed" if mode == "installed" else "pip-installed; source tree not built in place"
        return "installed", why, None
    if not (sys.path and _is_repo_root(sys.path[0])):
        sys.path.insert(0, str(REPO_ROOT))
    if mode == "source":
        why = f"{TARGET_ENV}=source"
    elif inplace is not None:
        why = f"built in place: {inplace.name}" + ("; a pip-installed copy is ignored" if installed else "")
    else:
        why = "no pip-installed flash_attn"
    return "source", why, None


TARGET, TARGET_WHY, TARGET_ERROR = _choose_target()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/reference.py, tests/helpers.py


def _differing_files(installed: Path) -> list:
    """Source-tree .py files whose installed copies differ (or are missing): edits not yet reinstalled."""
    differ = []
    for src in sorted(SOURCE_PACKAGE.rglob("*.py")):
        rel = src.relative_to(SOURCE_PACKAGE)
        if rel.name == "_build_config.py" or "__pycache__" in rel.parts:
            continue
        copy = installed / rel
        try:
            if not copy.is_file() or copy.read_bytes() != src.read_bytes():
                differ.append(rel.as_posix())
        except OSError:
            differ.append(rel.as_posix())
    return differ


def under_test_line() -> str:
    """One line: which flash_attn and which flash_attn_2_cuda the tests use."""
    try:
        import flash_attn

        package = Path(flash_attn.__file__).resolve().parent
        what = f"flash_attn {flash_attn.__version__} at {package}"
    except Exception as e:  # noqa: BLE001
        return f"flash_attn under test: does not import ({type(e).__name__}: {e})"
    if package == SOURCE_PACKAGE:
        kind = "source tree"
    elif TARGET == "installed":
        kind = "installed distribution"
    else:
        kind = "found on sys.path"
    ext = sys.modules.get("flash_attn_2_cuda")
    if ext is not None:
        ext_text = f"flash_attn_2_cuda at {getattr(ext, '__file__', '?')}"
    else:
        spec = importlib.util.find_spec("flash_attn_2_cuda")
        err = getattr(sys.modules.get("flash_attn._ops"), "_EXT_IMPORT_ERROR", None)
        if spec is None:
            ext_text = "flash_attn_2_cuda not built"
        else:
            ext_text = f"flash_attn_2_cuda at {spec.origin} does not load ({err})"
    line = f"flash_attn under test: {kind} ({TARGET_WHY}): {what}; {ext_text}"
    if kind == "installed distribution":
        differ = _differing_files(package)
        if differ:
            shown = ", ".join(differ[:3]) + (", ..." if len(differ) > 3 else "")
            line += (f"; NOTE: {len(differ)} source file(s) differ from the installed copy ({shown}): reinstall to "
                     f"test them, or {TARGET_ENV}=source")
    return line


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running GPU case; deselected unless selected with -m slow")
    if TARGET_ERROR:
        raise pytest.UsageError(TARGET_ERROR)


def pytest_sessionstart(session):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(under_test_line())


def pytest_collection_modifyitems(config, items):
    """Deselect `slow` tests unless the -m expression mentions slow."""
    if "slow" in (config.getoption("markexpr", "") or ""):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("slow") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        config.stash[_SLOW_DESELECTED] = len(drop)


_SLOW_DESELECTED = pytest.StashKey[int]()


def skip_reason(report) -> str:
    """The message of a skipped test's report, without pytest's "Skipped: " prefix."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    reason = reason.removeprefix("Skipped: ").strip()
    return " ".join(reason.split()) or "(no reason given)"


def skip_summary(reports, max_reasons=12, width=160) -> list:
    """Lines counting skipped tests by reason, most frequent first."""
    counts = collections.Counter(skip_reason(r) for r in reports)
    if not counts:
        return []
    lines = [f"{sum(counts.values())} skipped, by reason:"]
    ranked = counts.most_common()
    for reason, n in ranked[:max_reasons]:
        if len(reason) > width:
            reason = reason[: width - 3] + "..."
        lines.append(f"  {n:6d}  {reason}")
    rest = ranked[max_reasons:]
    if rest:
        lines.append(f"  {sum(n for _, n in rest):6d}  ({len(rest)} other reasons; pytest -rs lists every skip)")
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = skip_summary(terminalreporter.stats.get("skipped", []))
    slow = config.stash.get(_SLOW_DESELECTED, 0)
    if slow:
        lines.append(f"{slow} slow tests deselected (pytest -m slow runs them)")
    lines.append(under_test_line())
    for line in lines:
        terminalreporter.write_line(line)


@pytest.fixture
def ref_launcher(monkeypatch):
    """Route the custom ops to the float32 reference on any device (and skip the CUDA device check), so the
    whole Python path can run on CPU."""
    from flash_attn import _checks, _ops
    from reference import ReferenceLauncher

    launcher = ReferenceLauncher()
    monkeypatch.setattr(_ops, "_launch_fwd", launcher.fwd)
    monkeypatch.setattr(_ops, "_launch_varlen_fwd", launcher.varlen_fwd)
    monkeypatch.setattr(_checks, "check_devices", lambda *args, **kwargs: None)
    return launcher


@pytest.fixture
def ref_extension(monkeypatch):
    """Stand the float32 references in for flash_attn_2_cuda itself (reference.ReferenceExtension) and skip the CUDA
    device and build checks: the custom ops' real bodies, with the arguments they prepare for the binding, run on
    CPU."""
    from flash_attn import _checks, _ops
    from reference import ReferenceExtension

    ext = ReferenceExtension()
    monkeypatch.setattr(_ops, "flash_attn_gpu", ext)
    monkeypatch.setattr(_checks, "check_devices", lambda *args, **kwargs: None)
    monkeypatch.setattr(_checks, "check_build", lambda *args, **kwargs: None)
    return ext


@pytest.fixture
def ref_launcher_bwd(ref_launcher, monkeypatch):
    """ref_launcher plus reference backward ops (exercises the autograd plumbing: padding, packed grads)."""
    from flash_attn import _ops

    monkeypatch.setattr(_ops, "_launch_bwd", ref_launcher.bwd)
    monkeypatch.setattr(_ops, "_launch_varlen_bwd", ref_launcher.varlen_bwd)
    return ref_launcher


@pytest.fixture
def kernel_backend(request, monkeypatch):
    """For the GPU test modules: kernel outputs start NaN-poisoned and the float32 reference runs without TF32.
    Under FLASH_ATTN_TEST_DRYRUN the reference launcher (forward and backward) stands in for the kernels."""
    import torch
    from flash_attn import _ops
    from helpers import DRYRUN

    if DRYRUN:
        request.getfixturevalue("ref_launcher_bwd")
        yield
        return
    monkeypatch.setenv(_ops.POISON_ENV, "1")
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(prev)
