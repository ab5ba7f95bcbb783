//! Which globals a pickle may name.
//!
//! Allow-list first: a global is *allowed* only if legitimate checkpoints (PyTorch state dicts,
//! NumPy arrays, joblib wrappers) need it and loading it cannot run code of the file's choosing.
//! A short deny-list on top of that only decides how loud an unknown global is: a name on it is
//! *dangerous* (critical), anything else not allowed is *unknown* (medium). The deny-list is never
//! what keeps a file out — that is the allow-list's job — so a new bypass gadget is at worst
//! reported as unknown, never passed.

/// What a global is, as far as loading a checkpoint goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Needed by ordinary checkpoints and harmless.
    Allowed,
    /// Runs code, touches the system, or loads a nested payload; the reason says which.
    Dangerous(&'static str),
    /// Not needed by any checkpoint we know; loading imports it and may call it.
    Unknown,
}

/// Something a call on an allowed global does that the walker must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    None,
    /// `pickle.loads`-like: its first argument is a pickle that gets unpickled.
    NestedPickle,
    /// `torch.storage._load_from_bytes`: its first argument is a `torch.save` file (zip or
    /// legacy pickle) that gets loaded.
    NestedTorchSave,
    /// `_codecs.encode(text, "latin1")`: how protocol-2 NumPy pickles carry raw bytes.
    Latin1Encode,
}

/// Python 2 module names that Python 3's unpickler maps to Python 3 ones (`fix_imports`), so a
/// protocol-0–2 pickle can spell `__builtin__.eval` or `commands.getoutput` and still mean the
/// dangerous thing.
fn python3_module(module: &str) -> &str {
    match module {
        "__builtin__" | "exceptions" => "builtins",
        "copy_reg" => "copyreg",
        "cPickle" => "pickle",
        "commands" => "subprocess",
        "thread" => "_thread",
        "Queue" => "queue",
        "urllib2" => "urllib.request",
        "httplib" => "http.client",
        "SocketServer" => "socketserver",
        other => other,
    }
}

/// [`python3_module`] for the walker.
pub(super) fn python3_module_name(module: &str) -> &str {
    python3_module(module)
}

/// Modules where every name is dangerous: they run programs, execute or compile code, load
/// nested payloads, open files or sockets, or reach the interpreter's internals.
const DANGEROUS_MODULES: &[(&str, &str)] = &[
    ("os", "runs programs and touches the file system"),
    ("posix", "runs programs and touches the file system"),
    ("nt", "runs programs and touches the file system"),
    ("subprocess", "runs programs"),
    ("_posixsubprocess", "runs programs"),
    ("popen2", "runs programs"),
    ("pty", "spawns a shell"),
    ("runpy", "executes Python code"),
    ("importlib", "imports arbitrary modules"),
    ("imp", "imports arbitrary modules"),
    ("pkgutil", "resolves arbitrary names to objects"),
    ("code", "executes Python code"),
    ("codeop", "compiles Python code"),
    ("marshal", "builds code objects"),
    ("types", "builds code and function objects"),
    ("ctypes", "calls native code"),
    ("_ctypes", "calls native code"),
    ("cffi", "calls native code"),
    ("sys", "reaches the interpreter's internals"),
    ("gc", "reaches every live object"),
    ("inspect", "reaches frames and code"),
    ("socket", "opens network connections"),
    ("socketserver", "opens network connections"),
    ("ssl", "opens network connections"),
    ("http", "opens network connections"),
    ("urllib", "opens network connections"),
    ("requests", "opens network connections"),
    ("ftplib", "opens network connections"),
    ("smtplib", "opens network connections"),
    ("telnetlib", "opens network connections"),
    ("xmlrpc", "opens network connections"),
    ("webbrowser", "opens a browser / runs programs"),
    ("shutil", "copies, moves and deletes files"),
    ("tempfile", "creates files"),
    ("io", "opens files"),
    ("_io", "opens files"),
    ("pathlib", "opens and deletes files"),
    ("glob", "lists the file system"),
    ("pickle", "unpickles a nested payload"),
    ("_pickle", "unpickles a nested payload"),
    ("pickletools", "reads nested pickles"),
    ("dill", "unpickles a nested payload and code"),
    ("cloudpickle", "unpickles a nested payload and code"),
    ("shelve", "unpickles nested payloads from files"),
    ("joblib", "loads nested payloads"),
    ("asyncio", "runs programs and opens connections"),
    ("multiprocessing", "starts processes"),
    ("threading", "starts threads running arbitrary callables"),
    ("_thread", "starts threads running arbitrary callables"),
    ("signal", "installs signal handlers"),
    ("bdb", "executes Python code"),
    ("pdb", "executes Python code"),
    ("timeit", "executes Python code"),
    ("profile", "executes Python code"),
    ("cProfile", "executes Python code"),
    ("trace", "executes Python code"),
    ("doctest", "executes Python code"),
    ("site", "executes .pth files"),
    ("venv", "creates environments and runs programs"),
    ("ensurepip", "installs packages"),
    ("pip", "installs packages"),
    ("setuptools", "runs build scripts"),
    ("distutils", "runs build scripts"),
    ("torch.hub", "downloads and runs code"),
    ("torch.jit", "loads TorchScript code"),
    ("torch.package", "loads packaged Python code"),
    ("torch.serialization", "loads a nested checkpoint"),
    ("torch._C", "calls native internals"),
    ("torch._dynamo", "compiles and runs code"),
    ("torch._inductor", "compiles and runs code"),
    ("numpy.testing", "executes Python code (runstring)"),
    ("numpy.lib.npyio", "loads nested pickles"),
    ("numpy.f2py", "compiles and runs code"),
    ("numpy.distutils", "runs build scripts"),
    (
        "pydoc",
        "runs pagers (shell commands) and resolves arbitrary names",
    ),
    ("_sitebuiltins", "starts pydoc's pager (runs programs)"),
    ("_osx_support", "runs shell commands (_read_output)"),
    ("_aix_support", "runs shell commands"),
    ("platform", "runs shell commands (_syscmd_*)"),
    ("zipimport", "imports code from archives"),
    ("idlelib", "executes Python code"),
    (
        "logging.config",
        "builds handlers from arbitrary factories and listens on sockets",
    ),
    ("logging.handlers", "opens files and sockets"),
    ("ensurepip", "installs packages"),
    (
        "torch.fx",
        "generates and executes Python code (_forward_from_src, _exec_with_source)",
    ),
    (
        "torch.utils.cpp_extension",
        "compiles and loads native code",
    ),
    (
        "torch.ops",
        "loads native operator libraries (load_library)",
    ),
    (
        "torch._ops",
        "loads native operator libraries (load_library)",
    ),
    (
        "torch.classes",
        "loads native class libraries (load_library)",
    ),
    ("torch.library", "registers native operator implementations"),
    (
        "torch._classes",
        "loads native class libraries (load_library)",
    ),
    (
        "torch.utils._config_module",
        "loads configuration by executing pickles",
    ),
    ("numpy.ctypeslib", "loads native libraries"),
    ("numpy.lib.utils", "resolves and imports arbitrary names"),
    ("numpy.lib.format", "reads nested arrays, with pickles"),
    ("scipy.weave", "compiles and runs code"),
    ("sklearn.utils._joblib", "loads nested payloads"),
    ("keras.src.saving", "loads nested models with code"),
    ("dbm", "opens files"),
    ("sqlite3", "opens files and loads extensions"),
    ("yaml", "builds arbitrary Python objects (unsafe loaders)"),
    ("jsonpickle", "builds arbitrary Python objects"),
    ("pandas.io.pickle", "unpickles a nested payload"),
    ("huggingface_hub", "downloads files and code"),
    ("urllib3", "opens network connections"),
    ("httpx", "opens network connections"),
    ("aiohttp", "opens network connections"),
    (
        "paramiko",
        "opens network connections and runs remote commands",
    ),
    ("_winapi", "runs programs"),
    ("winreg", "edits the registry"),
    ("msvcrt", "reaches the console"),
];

/// Dangerous names in modules that also hold harmless ones.
const DANGEROUS_NAMES: &[(&str, &str, &str)] = &[
    ("builtins", "eval", "evaluates Python code"),
    ("builtins", "exec", "executes Python code"),
    ("builtins", "execfile", "executes a Python file"),
    ("builtins", "compile", "compiles Python code"),
    ("builtins", "__import__", "imports arbitrary modules"),
    (
        "builtins",
        "getattr",
        "reaches any attribute (e.g. os.system)",
    ),
    ("builtins", "setattr", "overwrites attributes"),
    ("builtins", "delattr", "deletes attributes"),
    ("builtins", "open", "opens files"),
    ("builtins", "file", "opens files"),
    ("builtins", "input", "reads the console"),
    ("builtins", "raw_input", "reads the console"),
    ("builtins", "breakpoint", "starts a debugger"),
    ("builtins", "globals", "reaches module globals"),
    ("builtins", "locals", "reaches local variables"),
    ("builtins", "vars", "reaches object dictionaries"),
    ("builtins", "apply", "calls arbitrary callables"),
    ("builtins", "help", "starts an interactive pager"),
    ("builtins", "exit", "exits the process"),
    ("builtins", "quit", "exits the process"),
    ("builtins", "memoryview", "reaches raw memory"),
    ("builtins", "type", "builds classes"),
    ("builtins", "super", "reaches parent methods"),
    ("builtins", "classmethod", "wraps arbitrary callables"),
    ("builtins", "staticmethod", "wraps arbitrary callables"),
    ("builtins", "property", "wraps arbitrary callables"),
    ("builtins", "map", "calls arbitrary callables"),
    ("builtins", "filter", "calls arbitrary callables"),
    ("operator", "attrgetter", "reaches any attribute"),
    ("operator", "methodcaller", "calls any method"),
    ("operator", "call", "calls arbitrary callables"),
    (
        "functools",
        "partial",
        "wraps a callable to be called later",
    ),
    (
        "functools",
        "partialmethod",
        "wraps a callable to be called later",
    ),
    ("functools", "reduce", "calls arbitrary callables"),
    ("torch", "load", "loads a nested checkpoint"),
    ("torch", "compile", "compiles and runs code"),
    ("torch", "_dynamo", "compiles and runs code"),
    (
        "torch._utils",
        "_import_dotted_name",
        "imports arbitrary modules",
    ),
    ("torch.serialization", "load", "loads a nested checkpoint"),
    ("builtins", "__build_class__", "builds classes from code"),
    ("builtins", "__loader__", "imports arbitrary modules"),
    ("codecs", "open", "opens files"),
    ("uuid", "_get_command_stdout", "runs programs"),
    ("uuid", "_popen", "runs programs"),
    (
        "copyreg",
        "_reconstructor.__globals__",
        "reaches interpreter internals",
    ),
    ("torch", "_load_global_deps", "loads native libraries"),
    ("numpy", "load", "loads nested pickles"),
    ("numpy", "loads", "unpickles a nested payload"),
    (
        "numpy.core.multiarray",
        "loads",
        "unpickles a nested payload",
    ),
    (
        "numpy._core.multiarray",
        "loads",
        "unpickles a nested payload",
    ),
];

/// Torch dtypes, layouts, memory formats and quantisation schemes: plain enum-like objects that
/// pickle by name (`torch.float32`).
const TORCH_PLAIN_OBJECTS: &[&str] = &[
    "float16",
    "float32",
    "float64",
    "bfloat16",
    "half",
    "float",
    "double",
    "complex32",
    "complex64",
    "complex128",
    "cfloat",
    "cdouble",
    "chalf",
    "int8",
    "int16",
    "int32",
    "int64",
    "short",
    "int",
    "long",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
    "quint8",
    "qint8",
    "qint32",
    "quint4x2",
    "quint2x4",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "strided",
    "sparse_coo",
    "sparse_csr",
    "sparse_csc",
    "sparse_bsr",
    "sparse_bsc",
    "_mkldnn",
    "contiguous_format",
    "channels_last",
    "channels_last_3d",
    "preserve_format",
    "per_tensor_affine",
    "per_channel_affine",
    "per_tensor_symmetric",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
    "Size",
    "device",
    "dtype",
    "layout",
    "memory_format",
    "finfo",
    "iinfo",
    "Tensor",
];

/// Exactly-named allowed globals: `(module, name)`.
const ALLOWED: &[(&str, &str)] = &[
    // Tensor rebuild functions of `torch.save` (their callable arguments are globals too and are
    // checked on their own).
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._utils", "_rebuild_parameter_v2"),
    ("torch._utils", "_rebuild_qtensor"),
    ("torch._utils", "_rebuild_sparse_tensor"),
    ("torch._utils", "_rebuild_sparse_csr_tensor"),
    ("torch._utils", "_rebuild_nested_tensor"),
    ("torch._utils", "_rebuild_device_tensor_from_numpy"),
    ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor"),
    ("torch._utils", "_rebuild_meta_tensor_no_storage"),
    ("torch._utils", "_rebuild_wrapper_subclass"),
    ("torch._utils", "_rebuild_xla_tensor"),
    ("torch._utils", "_rebuild_mtia_tensor"),
    ("torch._tensor", "_rebuild_from_type"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.nn.parameter", "Parameter"),
    ("torch.nn.parameter", "UninitializedParameter"),
    ("torch.nn.parameter", "Buffer"),
    ("torch.storage", "TypedStorage"),
    ("torch.storage", "UntypedStorage"),
    ("torch.storage", "_TypedStorage"),
    // Loads nested `torch.save` bytes, which the walker scans in turn.
    ("torch.storage", "_load_from_bytes"),
    ("torch.serialization", "_get_layout"),
    ("torch._tensor", "Tensor"),
    // TorchScript archives (`torch.jit.save`): `constants.pkl` / `data.pkl` name these
    // identity helpers of `torch/jit/_pickle.py` (each returns its first argument, or the id).
    ("torch.jit._pickle", "build_intlist"),
    ("torch.jit._pickle", "build_tensorlist"),
    ("torch.jit._pickle", "build_doublelist"),
    ("torch.jit._pickle", "build_boollist"),
    ("torch.jit._pickle", "build_tensor_from_id"),
    ("torch.jit._pickle", "restore_type_tag"),
    // Containers and plain values.
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("collections", "Counter"),
    ("collections", "deque"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("builtins", "bytearray"),
    ("builtins", "bytes"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "tuple"),
    ("builtins", "int"),
    ("builtins", "float"),
    ("builtins", "bool"),
    ("builtins", "str"),
    ("builtins", "range"),
    ("builtins", "object"),
    ("builtins", "Ellipsis"),
    ("builtins", "NotImplemented"),
    ("copyreg", "_reconstructor"),
    ("copyreg", "__newobj__"),
    ("copyreg", "__newobj_ex__"),
    ("_codecs", "encode"),
    ("codecs", "encode"),
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("datetime", "time"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("decimal", "Decimal"),
    ("fractions", "Fraction"),
    ("uuid", "UUID"),
    ("argparse", "Namespace"),
    // NumPy arrays, dtypes and scalars.
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.ma.core", "_mareconstruct"),
    // joblib's array wrapper: a data record whose array bytes follow it in the file.
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
];

/// Whether `module` is `prefix` or a submodule of it.
fn in_module(module: &str, prefix: &str) -> bool {
    module == prefix
        || module
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Names that, as the final attribute of any global, are the dangerous function whatever the
/// module: modules re-export them (`from os import system`), so `("some_module", "system")` may
/// well be `os.system`.
const DANGEROUS_ATTRIBUTES: &[&str] = &[
    "system",
    "popen",
    "popen2",
    "popen3",
    "popen4",
    "Popen",
    "getoutput",
    "getstatusoutput",
    "check_output",
    "check_call",
    "exec",
    "eval",
    "execfile",
    "execl",
    "execle",
    "execlp",
    "execlpe",
    "execv",
    "execve",
    "execvp",
    "execvpe",
    "spawnl",
    "spawnle",
    "spawnlp",
    "spawnlpe",
    "spawnv",
    "spawnve",
    "spawnvp",
    "spawnvpe",
    "posix_spawn",
    "posix_spawnp",
    "startfile",
    "__import__",
    "import_module",
    "pipepager",
    "tempfilepager",
    "_read_output",
    "_run_code",
    "run_path",
    "run_module",
    "_forward_from_src",
    "_exec_with_source",
    "dlopen",
    "CDLL",
    "PyDLL",
    "LoadLibrary",
    "load_library",
    "load_inline",
];

/// Further names that are dangerous as the *final* attribute of a dotted name (`a.b.getattr`):
/// a dotted name walks attributes of a module, and no checkpoint needs to reach these that way.
const DANGEROUS_DOTTED_ATTRIBUTES: &[&str] = &[
    "getattr",
    "setattr",
    "delattr",
    "compile",
    "open",
    "load",
    "loads",
    "attrgetter",
    "methodcaller",
    "partial",
    "call",
    "run",
    "rmtree",
    "remove",
    "unlink",
    "rename",
    "fork",
    "kill",
    "globals",
    "locals",
    "vars",
    "apply",
    "breakpoint",
    "input",
    "resolve_name",
    "locate",
];

/// Module names that, as an intermediate attribute of a dotted name, mean the name walks into
/// that module (`("torch.serialization", "os.system")`, `("x", "_os.system")`).
const DANGEROUS_COMPONENTS: &[&str] = &["_os", "_sys", "builtins", "__builtin__", "_subprocess"];

thread_local! {
    /// Globals allowed explicitly for the scan running on this thread ([`with_extra_allowed`]).
    static EXTRA_ALLOWED: std::cell::RefCell<Vec<(String, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Parse one `--allow` entry: `module.Name` (split at the last dot) or `module:Qualified.Name`
/// for a dotted name. `None` when either part is empty.
pub fn parse_allowed(entry: &str) -> Option<(String, String)> {
    let entry = entry.trim();
    let (module, name) = match entry.split_once(':') {
        Some(pair) => pair,
        None => entry.rsplit_once('.')?,
    };
    if module.is_empty() || name.is_empty() {
        return None;
    }
    Some((module.to_string(), name.to_string()))
}

/// Run `scan` with `allowed` (exact `(module, name)` pairs) added to the allow-list on this
/// thread. Explicitly allowed globals only ever turn an *unknown* global into an allowed one:
/// a global on the deny-list, or a dotted name reaching one, stays dangerous.
pub fn with_extra_allowed<T>(allowed: &[(String, String)], scan: impl FnOnce() -> T) -> T {
    let previous = EXTRA_ALLOWED.with(|cell| cell.replace(allowed.to_vec()));
    let result = scan();
    EXTRA_ALLOWED.with(|cell| cell.replace(previous));
    result
}

/// Whether `module.name` is allowed only because the user allowed it explicitly.
pub fn allowed_by_option(module: &str, name: &str) -> bool {
    let module = python3_module(module);
    let explicitly = EXTRA_ALLOWED.with(|cell| {
        cell.borrow()
            .iter()
            .any(|(allowed_module, allowed_name)| allowed_module == module && allowed_name == name)
    });
    explicitly && classify_builtin(module, name) == Verdict::Unknown
}

/// Classify the global `module.name`, with any globals allowed explicitly for this scan
/// ([`with_extra_allowed`]).
pub fn classify(module: &str, name: &str) -> Verdict {
    if allowed_by_option(module, name) {
        return Verdict::Allowed;
    }
    classify_builtin(module, name)
}

/// Classify the global `module.name` against the built-in lists.
///
/// `name` may be dotted: `find_class` resolves it attribute by attribute from the module, so
/// `("collections", "os.system")` is `os.system` wherever `collections` imported `os`. The
/// allow-list matches exact `(module, name)` pairs only, so a dotted name is never allowed by
/// its prefix; the deny-list is matched against the whole path, every module it walks through
/// and its final attribute.
fn classify_builtin(module: &str, name: &str) -> Verdict {
    let module = python3_module(module);
    if ALLOWED.contains(&(module, name)) {
        return Verdict::Allowed;
    }
    // Attribute paths (`a.b.__globals__`) are resolved attribute by attribute by protocol-4+
    // unpicklers, and module dunders (`collections.__builtins__`) are interpreter internals.
    if name
        .split('.')
        .any(|part| part.len() > 4 && part.starts_with("__") && part.ends_with("__"))
    {
        return Verdict::Dangerous("reaches interpreter internals through a dunder attribute");
    }
    let full = format!("{module}.{name}");
    for &(dangerous_module, reason) in DANGEROUS_MODULES {
        if in_module(module, dangerous_module) || in_module(&full, dangerous_module) {
            return Verdict::Dangerous(reason);
        }
    }
    for &(dangerous_module, dangerous_name, reason) in DANGEROUS_NAMES {
        let path = format!("{dangerous_module}.{dangerous_name}");
        if in_module(&full, &path) {
            return Verdict::Dangerous(reason);
        }
    }
    let parts: Vec<&str> = name.split('.').collect();
    let (final_name, through) = match parts.split_last() {
        Some((last, through)) => (*last, through),
        None => (name, &[][..]),
    };
    for part in through {
        let single_segment_module = DANGEROUS_MODULES
            .iter()
            .any(|(dangerous, _)| !dangerous.contains('.') && dangerous == part);
        if single_segment_module || DANGEROUS_COMPONENTS.contains(part) {
            return Verdict::Dangerous(
                "walks through a module that runs code (an alias of a dangerous module)",
            );
        }
    }
    if DANGEROUS_ATTRIBUTES.contains(&final_name)
        || (!through.is_empty() && DANGEROUS_DOTTED_ATTRIBUTES.contains(&final_name))
    {
        return Verdict::Dangerous(
            "ends in the name of a function that runs code, whatever module re-exports it",
        );
    }
    let plain_name = through.is_empty();
    if module == "torch"
        && plain_name
        && (name.ends_with("Storage") || TORCH_PLAIN_OBJECTS.contains(&name))
    {
        return Verdict::Allowed;
    }
    if module == "numpy.dtypes" && plain_name && name.ends_with("DType") {
        return Verdict::Allowed;
    }
    // TorchScript classes in `torch.jit.save` archives: resolved by the TorchScript unpickler to
    // classes compiled from the archive's `code/` members (a separate check), never imported as
    // Python modules.
    if in_module(module, "__torch__") && plain_name {
        return Verdict::Allowed;
    }
    // PyTorch's own layer classes, as a whole-module `torch.save` names them
    // (`torch.nn.modules.linear.Linear`): instantiated without `__init__`, then `BUILD` runs
    // `nn.Module.__setstate__`. Plain class names only (upper-case initial), so no dotted walk
    // and no function imported into those modules is reached this way.
    if in_module(module, "torch.nn.modules")
        && plain_name
        && name.starts_with(|ch: char| ch.is_ascii_uppercase())
    {
        return Verdict::Allowed;
    }
    // torchvision's architectures, as a whole-module `torch.save` of a torchvision model names
    // them (`torchvision.models.resnet.ResNet`, `…shufflenetv2.InvertedResidual`): the same
    // NEWOBJ-then-BUILD as PyTorch's layers, and no torchvision model class defines
    // `__setstate__`, `__reduce__` or `__new__` (checked against torchvision 0.29). The
    // upper-case names imported into those modules are typing helpers, `OrderedDict`, `Enum`,
    // `torch.Tensor`, PyTorch layers and `ModuleType`, none of which runs code when called.
    // `feature_extraction` is left out: it builds `torch.fx` graph modules, which generate and
    // run code.
    // Their building blocks live in `torchvision.ops` (`Conv2dNormActivation`,
    // `SqueezeExcitation`, `StochasticDepth`, `FrozenBatchNorm2d`, …), and some architectures
    // name private layer classes (`densenet._DenseBlock`). Checked against torchvision 0.29: the
    // other class-like names there are typing helpers, dataclasses and namedtuples
    // (`_MBConvConfig`, `_GoogLeNetOutputs`), `collections.OrderedDict`, `torch.Tensor` and
    // `Parameter`; the rest are constants, which cannot be called.
    let class_like = |name: &str| {
        let name = name.strip_prefix('_').unwrap_or(name);
        name.starts_with(|ch: char| ch.is_ascii_uppercase())
    };
    if (in_module(module, "torchvision.models") || in_module(module, "torchvision.ops"))
        && !in_module(module, "torchvision.models.feature_extraction")
        && plain_name
        && class_like(name)
    {
        return Verdict::Allowed;
    }
    Verdict::Unknown
}

/// What a call on the global `module.name` needs the walker to follow.
pub fn special(module: &str, name: &str) -> Special {
    let module = python3_module(module);
    match (module, name) {
        ("torch.storage", "_load_from_bytes") => Special::NestedTorchSave,
        ("_codecs" | "codecs", "encode") => Special::Latin1Encode,
        ("pickle" | "_pickle" | "dill" | "cloudpickle", "loads" | "_loads")
        | ("numpy" | "numpy.core.multiarray" | "numpy._core.multiarray", "loads") => {
            Special::NestedPickle
        }
        _ => Special::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_globals_are_allowed() {
        for (module, name) in [
            ("torch._utils", "_rebuild_tensor_v2"),
            ("torch", "FloatStorage"),
            ("torch", "BFloat16Storage"),
            ("collections", "OrderedDict"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "dtype"),
            ("__builtin__", "set"),
            ("copy_reg", "_reconstructor"),
            ("torch", "float32"),
            ("numpy.dtypes", "Float64DType"),
        ] {
            assert_eq!(classify(module, name), Verdict::Allowed, "{module}.{name}");
        }
    }

    #[test]
    fn code_execution_globals_are_dangerous() {
        for (module, name) in [
            ("os", "system"),
            ("posix", "system"),
            ("nt", "system"),
            ("os.path", "join"),
            ("subprocess", "Popen"),
            ("commands", "getoutput"),
            ("builtins", "eval"),
            ("__builtin__", "eval"),
            ("builtins", "getattr"),
            ("builtins", "__import__"),
            ("importlib", "import_module"),
            ("importlib.util", "find_spec"),
            ("pkgutil", "resolve_name"),
            ("runpy", "_run_code"),
            ("pickle", "loads"),
            ("_pickle", "loads"),
            ("operator", "attrgetter"),
            ("torch._utils", "_rebuild_tensor_v2.__globals__"),
            ("collections", "__builtins__"),
            ("collections", "OrderedDict.__init__.__globals__"),
            ("numpy.testing._private.utils", "runstring"),
            // Dotted names resolve attribute by attribute: judge the whole path.
            ("torch.serialization", "os.system"),
            ("torch._utils", "os.system"),
            ("collections", "_os.system"),
            ("copyreg", "builtins.exec"),
            ("x", "builtins.getattr"),
            ("torch", "hub.load"),
            ("torch", "serialization.load"),
            ("numpy", "core.multiarray.loads"),
            ("mypkg", "system"),
            ("mypkg.sub", "a.b.popen"),
            ("pydoc", "pipepager"),
            ("torch.fx.graph_module", "_forward_from_src"),
            ("logging.config", "dictConfig"),
            ("yaml", "unsafe_load"),
            ("pandas.io.pickle", "read_pickle"),
            // Explicitly allowed TorchScript names do not open the module.
            ("torch.jit._pickle", "build_intlist.__globals__"),
            ("torch.jit", "load"),
        ] {
            assert!(
                matches!(classify(module, name), Verdict::Dangerous(_)),
                "{module}.{name}"
            );
        }
    }

    #[test]
    fn model_classes_are_unknown_not_dangerous() {
        assert_eq!(classify("__main__", "TinyNet"), Verdict::Unknown);
        // Third-party architectures are the team's to allow (torchvision's are allowed).
        assert_eq!(classify("timm.models.resnet", "ResNet"), Verdict::Unknown);
        assert_eq!(classify("collections", "OrderedDictX"), Verdict::Unknown);
        assert_eq!(classify("torchx", "FloatStorage"), Verdict::Unknown);
        assert_eq!(classify("torch", "x.FloatStorage"), Verdict::Unknown);
        // A dotted name through an allowed module is not allowed by its prefix.
        assert_eq!(classify("collections", "OrderedDict.x"), Verdict::Unknown);
        assert_eq!(
            classify("torch.nn.modules.linear", "x.Linear"),
            Verdict::Unknown
        );
        assert_eq!(classify("__torch__", "a.B"), Verdict::Unknown);
    }

    #[test]
    fn torchscript_and_torch_layer_names_are_allowed() {
        for (module, name) in [
            ("torch.jit._pickle", "build_intlist"),
            ("torch.jit._pickle", "restore_type_tag"),
            ("__torch__", "MyModule"),
            ("__torch__.torch.nn.modules.linear", "Linear"),
            ("torch.nn.modules.linear", "Linear"),
        ] {
            assert_eq!(classify(module, name), Verdict::Allowed, "{module}.{name}");
        }
        assert_eq!(
            classify("torch.nn.modules.module", "functools"),
            Verdict::Unknown
        );
        assert_eq!(
            classify("torchvision.models.shufflenetv2", "ShuffleNetV2"),
            Verdict::Allowed
        );
        assert_eq!(classify("torchvision.models", "ResNet"), Verdict::Allowed);
        for (module, name) in [
            ("torchvision.ops.misc", "Conv2dNormActivation"),
            ("torchvision.ops.stochastic_depth", "StochasticDepth"),
            ("torchvision.models.densenet", "_DenseBlock"),
        ] {
            assert_eq!(classify(module, name), Verdict::Allowed, "{module}.{name}");
        }
        for (module, name) in [
            ("torchvision.models.feature_extraction", "DualGraphModule"),
            ("torchvision.models.resnet", "resnet18"),
            ("torchvision.models.resnet", "F.relu"),
            ("torchvision.ops.misc", "F.relu"),
            ("torchvision.ops.boxes", "nms"),
            ("torchvision.models._api", "Weights.get_state_dict"),
            ("torchvision.io", "VideoReader"),
        ] {
            assert_eq!(classify(module, name), Verdict::Unknown, "{module}.{name}");
        }
        assert!(matches!(
            classify("torchvision.models.resnet", "Popen"),
            Verdict::Dangerous(_)
        ));
    }

    #[test]
    fn extra_allowed_globals_only_turn_unknown_into_allowed() {
        let allowed = vec![
            ("mypkg".to_string(), "Net".to_string()),
            ("os".to_string(), "system".to_string()),
        ];
        with_extra_allowed(&allowed, || {
            assert_eq!(classify("mypkg", "Net"), Verdict::Allowed);
            assert!(allowed_by_option("mypkg", "Net"));
            assert!(matches!(classify("os", "system"), Verdict::Dangerous(_)));
            assert_eq!(classify("mypkg", "Net.x"), Verdict::Unknown);
        });
        assert_eq!(classify("mypkg", "Net"), Verdict::Unknown);
        assert_eq!(
            parse_allowed("a.b:C.D"),
            Some(("a.b".to_string(), "C.D".to_string()))
        );
        assert_eq!(parse_allowed("nodot"), None);
    }
}
