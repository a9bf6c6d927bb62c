"""Memory checks before allocation: a request that cannot fit is refused in one line.

    available_memory()                 bytes this process can still get (None if unknown)
    format_bytes(n)                    '1.5 GB'
    check_memory(name, nbytes, what)   ValueError naming ``name`` if nbytes cannot fit
    training_bytes(...)                what a training run needs: (for the parameters, for the data)
    training_memory_error(...)         the option to blame and one line, or None if it fits

Sizes are Python integers, so nothing overflows however large the request.
The estimates are rough (within a factor of about two of the peak); they
are only meant to turn a request that cannot possibly fit into a clear
error instead of a ``MemoryError`` traceback minutes later. No NumPy here,
so that argparse code can use it.
"""

from __future__ import annotations

import os


def available_memory():
    """Bytes of memory this process could still allocate, or None if unknown.

    On Linux: MemAvailable + SwapFree from /proc/meminfo. Elsewhere: the
    physical memory (``os.sysconf``), or None.
    """
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
        kib = int(fields["MemAvailable"].split()[0]) + int(fields.get("SwapFree", "0 kB").split()[0])
        return kib * 1024
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(n):
    """'512 B', '3.1 MB', '2.4 TB', '8.1e+22 B' for a number of bytes."""
    for unit, size in (("EB", 10**18), ("PB", 10**15), ("TB", 10**12), ("GB", 10**9),
                       ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.3g} {unit}" if n < 1000 * size else f"{float(n):.3g} B"
    return f"{n} B"


def check_memory(name, nbytes, what, available=None):
    """Raise ValueError naming ``name`` if ``nbytes`` (what ``what`` needs) cannot fit."""
    available = available_memory() if available is None else available
    if available is not None and nbytes > available:
        raise ValueError(f"{name}: {what} would need {format_bytes(nbytes)} of memory, more than "
                         f"the {format_bytes(available)} available")


def training_bytes(m, n_visible, n_hidden, itemsize, optimizer="lbfgs"):
    """(bytes for the parameters and the optimizer's state, bytes for the data and activations).

    L-BFGS keeps float64 copies of the packed parameters, its gradient and
    10 correction pairs; Adam the params, the gradient and two moments.
    The data: X (m, n_visible) for training and about as much for testing,
    and the activations and deltas of one full pass over m rows.
    """
    n_params = 2 * n_visible * n_hidden + n_visible + n_hidden
    if optimizer == "lbfgs":
        per_param = 4 * itemsize + 8 * (2 * 10 + 8)
    else:
        per_param = 8 * itemsize
    data = m * n_visible * itemsize * 3 + m * (n_visible + n_hidden) * itemsize * 2
    return n_params * per_param, data


def training_memory_error(*, m, n_visible, n_hidden, itemsize, optimizer, data_option,
                          hidden_option="--hidden", available=None):
    """(option, message) if a training run of this size cannot fit in memory, else None.

    The option blamed is ``data_option`` (e.g. "--examples" or "--patches")
    when even one hidden unit would not fit, else ``hidden_option``.
    """
    params, data = training_bytes(m, n_visible, n_hidden, itemsize, optimizer)
    available = available_memory() if available is None else available
    if available is None or params + data <= available:
        return None
    # Blame the data option if even one hidden unit would not fit; else --hidden.
    option = data_option if sum(training_bytes(m, n_visible, 1, itemsize, optimizer)) > available \
        else hidden_option
    return option, (f"{option}: training on {m} examples x {n_visible} inputs -> {n_hidden} hidden "
                    f"units would need about {format_bytes(params + data)} of memory "
                    f"({format_bytes(params)} for the parameters, {format_bytes(data)} for the data), "
                    f"more than the {format_bytes(available)} available")


def refuse_training_beyond_memory(parser, args, *, m, n_visible, data_option):
    """``parser.error`` (exit 2, one line) if the run the options ask for cannot fit in memory.

    args: the options of ``experiment.add_training_arguments`` (--hidden,
    --dtype, --optimizer); m and n_visible: the size of the training data the
    other options ask for; data_option: the option that sets m.
    """
    problem = training_memory_error(m=m, n_visible=n_visible, n_hidden=args.hidden,
                                    itemsize=4 if args.dtype == "float32" else 8,
                                    optimizer=args.optimizer, data_option=data_option)
    if problem is not None:
        parser.error(problem[1])
