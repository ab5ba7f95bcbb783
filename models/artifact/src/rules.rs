//! The registry of scanner rules: every kind of [`crate::Finding`] the scanners can report, with
//! its stable id, default severity and documentation, declared once.
//!
//! A finding carries a [`RuleId`], not a string, so a misspelt rule is a compile error and every
//! rule a scanner emits has a summary and help text. The SARIF rule metadata
//! ([`crate::report::to_sarif`]), `gauntlet list rules` and the rule table in `docs/scanner.md`
//! ([`rules_markdown`]) are all generated from [`RULES`].
//!
//! The id strings are a public contract: JSON and SARIF output, suppressions in code-scanning
//! dashboards and the regression corpus refer to them. Renaming one is a breaking change.

use std::fmt::Write as _;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Severity;

/// A rule's entry in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The typed identity findings carry; [`RuleId::as_str`] is its stable id string.
    pub id: RuleId,
    /// Which scanner (or part of the walk) reports it; groups the documentation.
    pub group: RuleGroup,
    /// The most severe level the scanners report this rule at. Findings carry their own
    /// severity, which may be lower where one rule covers cases of different weight (an empty
    /// ONNX external-data path is medium, a garbled one high).
    pub default_severity: Severity,
    /// One line, starting lower case unless with a name, no final full stop: SARIF's
    /// `shortDescription`.
    pub summary: &'static str,
    /// A few sentences: what the finding means, why it matters and what to do about it.
    pub help: &'static str,
}

/// Which scanner reports a rule. Orders the documentation and becomes a SARIF tag, so a
/// dashboard can filter by format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleGroup {
    Pickle,
    Zip,
    Tar,
    Npy,
    Safetensors,
    Onnx,
    Gguf,
    Keras,
    /// Whether a model's hub id is the one the team meant.
    Identity,
    /// The walk and its limits: files the scanners could not or would not read.
    Files,
}

impl RuleGroup {
    /// Every group, in documentation order.
    pub const ALL: [RuleGroup; 10] = [
        RuleGroup::Pickle,
        RuleGroup::Zip,
        RuleGroup::Tar,
        RuleGroup::Npy,
        RuleGroup::Safetensors,
        RuleGroup::Onnx,
        RuleGroup::Gguf,
        RuleGroup::Keras,
        RuleGroup::Identity,
        RuleGroup::Files,
    ];

    /// The heading of the group's section in `docs/scanner.md`.
    pub const fn title(self) -> &'static str {
        match self {
            RuleGroup::Pickle => "Pickle",
            RuleGroup::Zip => "Zip",
            RuleGroup::Tar => "Tar",
            RuleGroup::Npy => "NumPy",
            RuleGroup::Safetensors => "safetensors",
            RuleGroup::Onnx => "ONNX",
            RuleGroup::Gguf => "GGUF",
            RuleGroup::Keras => "Keras and HDF5",
            RuleGroup::Identity => "Model identity",
            RuleGroup::Files => "Files and limits",
        }
    }

    /// The group as a SARIF `properties.tags` entry.
    pub const fn tag(self) -> &'static str {
        match self {
            RuleGroup::Pickle => "pickle",
            RuleGroup::Zip => "zip",
            RuleGroup::Tar => "tar",
            RuleGroup::Npy => "npy",
            RuleGroup::Safetensors => "safetensors",
            RuleGroup::Onnx => "onnx",
            RuleGroup::Gguf => "gguf",
            RuleGroup::Keras => "keras",
            RuleGroup::Identity => "identity",
            RuleGroup::Files => "files",
        }
    }
}

/// A string that names no rule in the registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scanner rule `{0}`; `gauntlet list rules` lists them")]
pub struct UnknownRule(pub String);

/// Declares the registry: each rule once, as `Variant = "id", Group, Severity, summary, help`.
/// Generates [`RuleId`], its id strings and lookups, and [`RULES`] in declaration order, so the
/// enum and the table cannot disagree.
macro_rules! rules {
    ($(
        $variant:ident = $id:literal, $group:ident, $severity:ident,
        summary: $summary:literal,
        help: $help:literal;
    )*) => {
        /// The typed identity of a scanner rule. Each variant is one entry of [`RULES`];
        /// [`RuleId::as_str`] gives the stable id string used in every output format.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum RuleId {
            $(
                #[doc = concat!("`", $id, "`: ", $summary, ".")]
                $variant,
            )*
        }

        impl RuleId {
            /// Every rule, in registry order.
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant),*];

            /// The stable id string, e.g. `pickle-dangerous-global`: the SARIF rule id and the
            /// `rule` field of JSON findings.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(RuleId::$variant => $id,)*
                }
            }

            /// The rule's registry entry.
            pub const fn rule(self) -> &'static Rule {
                match self {
                    $(RuleId::$variant => &Rule {
                        id: RuleId::$variant,
                        group: RuleGroup::$group,
                        default_severity: Severity::$severity,
                        summary: $summary,
                        help: $help,
                    },)*
                }
            }
        }

        impl std::str::FromStr for RuleId {
            type Err = UnknownRule;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($id => Ok(RuleId::$variant),)*
                    other => Err(UnknownRule(other.to_string())),
                }
            }
        }

        /// Every rule the scanners can report, grouped by [`RuleGroup`] in documentation order.
        pub const RULES: &[Rule] = &[$(*RuleId::$variant.rule()),*];
    };
}

rules! {
    // ----- Pickle -----------------------------------------------------------------------------
    PickleDangerousGlobal = "pickle-dangerous-global", Pickle, Critical,
        summary: "pickle imports a global that can run code",
        help: "A GLOBAL, STACK_GLOBAL or INST opcode names a function or module on the deny-list \
               (os/posix, subprocess, eval/exec/getattr/`__import__`, importlib, runpy, nested \
               pickle loads, marshal, sockets, …). Unpickling imports it, and the stream can then \
               call it with arguments of the file author's choosing: code execution on load. Do \
               not load the file; get the weights as safetensors, or as a state_dict from a source \
               you trust loaded with `torch.load(..., weights_only=True)`.";
    PickleUnknownGlobal = "pickle-unknown-global", Pickle, Medium,
        summary: "pickle names a global that is not on the allow-list, without calling it",
        help: "The pickle names a global that is neither on the allow-list of what checkpoints \
               need nor known to be dangerous, but nothing in the stream calls it (when something \
               does, the finding is `pickle-unknown-call`, high). Loading still imports its \
               module, so module-level code outside the file runs. Check the named global; \
               prefer a state_dict or safetensors, which import nothing.";
    PickleAllowedByOption = "pickle-allowed-by-option", Pickle, Info,
        summary: "pickle uses a global allowed explicitly by the user",
        help: "The pickle names or calls a global that is not on the built-in allow-list but was \
               allowed explicitly (`gauntlet scan --allow module.Name`, or `allow_globals` in a \
               suite's `[model]` section). It is listed so that the report shows what the \
               verdict relied on; review the list when the file or the allowed code changes.";
    PickleUnknownCall = "pickle-unknown-call", Pickle, High,
        summary: "pickle calls a global that is not on the allow-list",
        help: "The pickle invokes a global that is not on the allow-list: REDUCE, NEWOBJ, \
               NEWOBJ_EX, OBJ or INST calls it, an allow-listed rebuild helper receives it as an \
               argument it calls or instantiates (`copyreg._reconstructor`'s class, \
               `torch._tensor._rebuild_from_type_v2`'s function), or a BUILD state installs it \
               as `__setstate__`. Loading runs that code, so the file fails the default gate. A \
               whole-model `torch.save` calls its own classes this way; if they are yours, allow \
               them explicitly with `gauntlet scan --allow module.Class`, or better, save a \
               state_dict or safetensors.";
    PickleUnresolvableGlobal = "pickle-unresolvable-global", Pickle, High,
        summary: "pickle imports a global whose name cannot be known before loading",
        help: "A STACK_GLOBAL takes its module or name from values built while loading rather \
               than plain strings, or an EXT opcode takes the global from the loader's copyreg \
               extension registry. Either way the file does not say what gets imported, so no \
               scanner can check it, which is how payloads slip past allow-lists. Legitimate \
               checkpoints do not do this; do not load the file.";
    PickleComputedCall = "pickle-computed-call", Pickle, High,
        summary: "pickle calls a value computed while loading",
        help: "REDUCE, NEWOBJ, NEWOBJ_EX, OBJ or INST calls something that is not a named global, \
               such as the result of `getattr` or `import_module`. Calling computed values is how \
               allow-list-evading payloads reach dangerous functions. Legitimate checkpoints only \
               call named globals; do not load the file.";
    PickleNestedUnresolvable = "pickle-nested-unresolvable", Pickle, High,
        summary: "pickle loads a nested payload that is built while loading",
        help: "A nested-pickle loader (`pickle.loads`, `torch.storage._load_from_bytes`, …) is \
               called on something that is not a byte string in the file, so the payload it \
               unpickles is computed at load time and cannot be scanned. Do not load the file.";
    PickleBuildHijack = "pickle-build-hijack", Pickle, High,
        summary: "pickle BUILD sets dunder attributes or rewires a class or module",
        help: "A BUILD opcode sets attributes such as `__setstate__` or `__reduce__` through pickle \
               state, or sets attributes on a global (a class, function or module) instead of a \
               fresh instance. The first makes a later BUILD call a function of the author's \
               choosing; the second changes code for everything loaded afterwards. Legitimate \
               checkpoints do neither; do not load the file.";
    PicklePolyglot = "pickle-polyglot", Pickle, High,
        summary: "content of another format is also a pickle from its first byte",
        help: "The file is identified as another format (a tar archive whose first header is a \
               pickle, for instance), and it is also a pickle read from byte 0: `pickle.load`, \
               joblib and `np.load(allow_pickle=True)` unpickle it, whatever the other format's \
               reader sees. Exporters never write such files; the pickle was scanned as well, \
               and its own findings follow. Do not load the file.";
    PickleMalformed = "pickle-malformed", Pickle, High,
        summary: "pickle stream is malformed",
        help: "The real unpickler would raise an error at this opcode, but it executes every \
               opcode before the error, so a payload can sit in front of deliberate garbage, and \
               scanners that give up on malformed streams miss it. Findings before this one still \
               apply. A checkpoint that is merely truncated or corrupt should be downloaded or \
               exported again.";
    PickleAnalysisLimit = "pickle-analysis-limit", Pickle, High,
        summary: "pickle exceeds what the scanner analyses",
        help: "The stream's stack, memo or strings, or the nested pickles inside it, are larger \
               than the scanner tracks, so the rest was not checked. Real checkpoints stay far \
               below these limits; a stream built to exhaust a scanner is suspect. Treat the \
               unchecked part as unverified.";
    PickleTrailingData = "pickle-trailing-data", Pickle, Info,
        summary: "bytes after the last pickle are not a pickle",
        help: "Data follows the last pickle in the stream. Legacy `torch.save` and joblib files \
               keep raw storage or array bytes there, and unpickling does not read them, so \
               nothing there runs. Informational.";

    // ----- Zip --------------------------------------------------------------------------------
    ZipMalformed = "zip-malformed", Zip, High,
        summary: "zip archive is malformed",
        help: "The end-of-central-directory record, a central directory entry or a local header \
               is missing, cut off or inconsistent, or a member does not inflate. Loaders and \
               scanners disagree about what such archives hold, so members may have been skipped \
               or read differently from how PyTorch or Python's zipfile read them. Re-create the \
               archive from a trusted source.";
    ZipTooManyMembers = "zip-too-many-members", Zip, High,
        summary: "zip archive declares more members than the scanner reads",
        help: "Only the first members, up to the scanner's limit, were checked. Model archives \
               have few members; a huge count is a denial-of-service attempt or a way to hide \
               members past a scanner's limit. Treat the rest of the archive as unverified.";
    ZipBomb = "zip-bomb", Zip, High,
        summary: "zip archive or member inflates far beyond its compressed size",
        help: "A member's compression ratio is above the scanner's bomb threshold, or it \
               inflates past the per-member limit, or the members declare more bytes in all than \
               the archive-wide limit. Extracting or loading it exhausts disk or memory. Do not \
               extract it; get the model from its original source.";
    ZipPathTraversal = "zip-path-traversal", Zip, High,
        summary: "zip member name escapes the extraction folder",
        help: "A member name is absolute, names a drive, or climbs out with `..`. Extracting the \
               archive writes that member outside the target folder (\"zip slip\"), which can \
               overwrite code or configuration. Do not extract it with tools that trust member \
               names.";
    ZipDuplicateMember = "zip-duplicate-member", Zip, High,
        summary: "zip archive has two members with the same name",
        help: "Loaders take one of the two and scanners may check the other, so the archive can \
               pass a scan and still load different content. Exporters never write duplicates; \
               re-create the archive from a trusted source.";
    ZipSymlink = "zip-symlink", Zip, High,
        summary: "zip member is a symbolic link",
        help: "The member's Unix mode marks it as a symbolic link. Extracting it creates a link \
               that can point later writes or reads anywhere on disk. Model archives have no \
               reason to contain links; do not extract it.";
    ZipHeaderMismatch = "zip-header-mismatch", Zip, High,
        summary: "zip local header and central directory disagree",
        help: "A member's local header and its central directory entry differ in name, \
               compression method, flags, CRC-32 or sizes. Tools that read one or the other see \
               different archives, a known way to slip members past scanners. Re-create the \
               archive from a trusted source.";
    ZipEncrypted = "zip-encrypted", Zip, Medium,
        summary: "zip member is encrypted",
        help: "An encrypted member's content cannot be inspected. Model checkpoints are not \
               encrypted; find out why this one is, and scan the decrypted content before \
               loading it.";
    ZipSizeMismatch = "zip-size-mismatch", Zip, High,
        summary: "zip member inflates to more than its declared size",
        help: "The member inflates past the uncompressed size its headers declare; only the \
               declared size was checked. Readers that trust the declared size and readers that \
               inflate to the end see different content. Re-create the archive from a trusted \
               source.";
    ZipUnsupportedCompression = "zip-unsupported-compression", Zip, High,
        summary: "zip member uses a compression method the scanner does not inflate",
        help: "Cannot verify: stored, deflated, bzip2 (12) and lzma (14) members are inflated, \
               as Python's zipfile reads them; this member uses another method (zstandard, which \
               Python 3.14's zipfile reads, or one no common reader knows), so its content was \
               not checked and `np.load` or joblib may load what the scanner never saw. PyTorch \
               and NumPy write stored or deflated members. Re-create the archive with one of \
               those, or check the member by other means.";
    ZipCrcMismatch = "zip-crc-mismatch", Zip, Medium,
        summary: "zip member does not match its CRC-32",
        help: "The inflated content differs from the CRC-32 recorded for it: the member was \
               corrupted, or edited after the archive was packed. Some loaders check the CRC and \
               some do not, so they may disagree on whether the file loads. Download or export \
               the file again.";
    ZipReaderDifferential = "zip-reader-differential", Zip, High,
        summary: "zip readers could disagree about this archive",
        help: "The archive is built so that different zip readers can see different members: \
               more than one end-of-central-directory record, member counts or directory sizes \
               that disagree between the end record and the directory, data before the first \
               member (Python's zipfile corrects offsets for it, PyTorch's reader does not), or \
               bytes after the end record. Exporters never write such archives; the scanner \
               checked the members Python's zipfile reads, but another loader may read others. \
               Re-create the archive from a trusted source.";
    TorchscriptCode = "torchscript-code", Zip, Medium,
        summary: "TorchScript code imports outside torch or calls custom operators",
        help: "A `code/` member of a TorchScript archive is TorchScript source that runs when the \
               module runs. It imports a module outside `torch`, or calls an `ops.<namespace>` \
               custom operator, which needs a native operator library loaded by the user. Read \
               the code, and find out which library provides the operators.";
    ZipOverlappingMembers = "zip-overlapping-members", Zip, High,
        summary: "zip members overlap",
        help: "Two members' bytes overlap in the file. Overlapping members build small archives \
               that inflate enormously (the overlapping-file zip bomb) and let different readers \
               see different content. Legitimate archives never overlap; do not extract it.";

    // ----- Tar --------------------------------------------------------------------------------
    TarMalformed = "tar-malformed", Tar, High,
        summary: "tar archive is malformed",
        help: "A header's checksum is wrong, its size field is not a number, or the archive ends \
               inside a header or a member. The rest of the archive was not checked, and other \
               tools may read it differently. Re-create the archive from a trusted source.";
    TarPathTraversal = "tar-path-traversal", Tar, High,
        summary: "tar member name escapes the extraction folder",
        help: "A member name is absolute or climbs out with `..`. Extracting the archive writes \
               outside the target folder, which can overwrite code or configuration. Do not \
               extract it with tools that trust member names.";
    TarLink = "tar-link", Tar, High,
        summary: "tar member is a symbolic or hard link",
        help: "Extracting a link can point later writes or reads anywhere on disk: a link \
               followed by a member of the same name writes through it. Model archives have no \
               reason to contain links; do not extract it.";
    TarDevice = "tar-device", Tar, High,
        summary: "tar member is a device node or FIFO",
        help: "Extracting it creates a device node (given the privileges) or a FIFO that blocks \
               whatever opens it. Model archives never contain these; do not extract it.";
    TarReaderDifferential = "tar-reader-differential", Tar, High,
        summary: "tar readers could disagree about this archive",
        help: "A member is named twice (tarfile's `getmember` returns the last, extraction writes \
               both), a PAX header overrides a member's size, or a member uses a type the scanner \
               cannot read (GNU sparse, multi-volume). Tools that honour or ignore such records \
               read different bytes, a known way to slip members past scanners. Re-create the \
               archive from a trusted source.";
    TarTooManyMembers = "tar-too-many-members", Tar, High,
        summary: "tar archive has more members than the scanner reads",
        help: "Only the first members, up to the scanner's limit, were checked. Model archives \
               have few members; a huge count is a denial-of-service attempt or a way to hide \
               members past a scanner's limit. Treat the rest of the archive as unverified.";

    TorchLegacyTar = "torch-legacy-tar", Tar, High,
        summary: "tar archive in torch.load's pre-0.4 format, whose pickles cannot all be framed",
        help: "Cannot verify: the archive has the `pickle`, `storages` and `tensors` members of \
               PyTorch's first checkpoint format, which torch.load still reads. Its `storages` \
               and `tensors` members alternate pickles with raw bytes whose length only the \
               pickles tell, and torch.load unpickles every record; the scanner checks the \
               pickles before the first raw block, not the ones after it, where a payload can \
               hide. Load it once in a sandbox and save it again with a current PyTorch, or \
               convert the weights to safetensors.";

    // ----- NumPy ------------------------------------------------------------------------------
    NpyMalformed = "npy-malformed", Npy, High,
        summary: "NumPy header cannot be read",
        help: "The `.npy` header is not the one NumPy writes (magic, version, length and a \
               dictionary with `descr`, `fortran_order` and `shape`). Without it the scanner \
               cannot tell whether the data is a pickle, which `np.load(..., allow_pickle=True)` \
               would run. Export the array again from a trusted source.";
    NpyObjectArray = "npy-object-array", Npy, Info,
        summary: "NumPy array holds Python objects, stored as a pickle",
        help: "The dtype contains objects, so the data section is a pickle that `np.load` reads \
               only with `allow_pickle=True`. The pickle is scanned and its own findings follow; \
               this one records that it is there. Weights should be numeric arrays.";

    // ----- safetensors ------------------------------------------------------------------------
    SafetensorsTruncated = "safetensors-truncated", Safetensors, High,
        summary: "safetensors file is truncated",
        help: "The file ends before its 8-byte header length field, or before the header that \
               field announces, so no loader can read it. Download the file again.";
    SafetensorsHeaderLength = "safetensors-header-length", Safetensors, High,
        summary: "safetensors header length is a bomb or exceeds the file",
        help: "The 8-byte length field claims a header longer than the reference loader's limit \
               or longer than the rest of the file. Naive loaders allocate whatever the field \
               says (a header-length bomb); the reference loader refuses the file. Download or \
               export it again.";
    SafetensorsHeaderNotUtf8 = "safetensors-header-not-utf8", Safetensors, High,
        summary: "safetensors header is not UTF-8",
        help: "The format requires the JSON header to be UTF-8 text. The reference loader refuses \
               the file, and tools that decode it leniently see different tensor names. Export \
               the file again.";
    SafetensorsNameNotUtf8 = "safetensors-name-not-utf8", Safetensors, High,
        summary: "safetensors name is not valid Unicode",
        help: "A `\\u` escape in the header is a lone UTF-16 surrogate, so a tensor name or \
               metadata value is not Unicode text. JSON parsers disagree on such escapes (refuse, \
               replace or keep them), so different tools see different names. Export the file \
               again.";
    SafetensorsHeaderNotJson = "safetensors-header-not-json", Safetensors, High,
        summary: "safetensors header is not valid JSON",
        help: "The reference loader refuses the file, while lenient parsers may still read \
               something from it, so tools disagree about its contents. Export the file again.";
    SafetensorsHeaderNotObject = "safetensors-header-not-object", Safetensors, High,
        summary: "safetensors header is not a JSON object",
        help: "The header must be an object mapping tensor names to their dtype, shape and data \
               offsets; the reference loader refuses anything else. Export the file again.";
    SafetensorsDuplicateName = "safetensors-duplicate-name", Safetensors, High,
        summary: "safetensors header names a tensor twice",
        help: "The same key appears twice in the header. JSON parsers disagree on which entry \
               wins (serde keeps the last, others the first), so the file can mean different \
               weights to different tools, and the reference loader does not notice. Export the \
               file again.";
    SafetensorsMalformedEntry = "safetensors-malformed-entry", Safetensors, High,
        summary: "safetensors tensor entry is malformed",
        help: "A tensor's entry is not an object, or its `dtype`, `shape` or `data_offsets` is \
               missing or of the wrong type. The reference loader refuses the header. Export the \
               file again.";
    SafetensorsUnexpectedField = "safetensors-unexpected-field", Safetensors, Low,
        summary: "safetensors tensor entry has undefined fields",
        help: "A tensor's entry has keys besides `dtype`, `shape` and `data_offsets`. Loaders \
               ignore them, so they can carry data no tool shows. Usually harmless; they \
               disappear when the file is exported again.";
    SafetensorsUnknownDtype = "safetensors-unknown-dtype", Safetensors, Medium,
        summary: "safetensors tensor has an unknown dtype",
        help: "The dtype is not one the format defines, so the tensor's size cannot be checked \
               against its shape, and loaders refuse or misread it. Export the file with a \
               standard dtype.";
    SafetensorsOffsetsReversed = "safetensors-offsets-reversed", Safetensors, High,
        summary: "safetensors tensor starts after it ends",
        help: "The tensor's `data_offsets` put its start after its end. Loaders that subtract \
               without checking wrap around; the reference loader refuses the file. Export the \
               file again.";
    SafetensorsOffsetsOutOfBounds = "safetensors-offsets-out-of-bounds", Safetensors, High,
        summary: "safetensors tensor runs past the end of the file",
        help: "The tensor's end offset lies beyond the data section, so reading it runs past the \
               end of the file: a truncated download or an out-of-bounds read. Download the file \
               again.";
    SafetensorsSizeOverflow = "safetensors-size-overflow", Safetensors, High,
        summary: "safetensors tensor size overflows",
        help: "The dtype's size times the product of the shape overflows 64 bits, a classic trick \
               to wrap a loader's size computation so that it allocates little and writes a lot. \
               The reference loader refuses the file; do not load it with tools that compute \
               sizes unchecked.";
    SafetensorsSizeMismatch = "safetensors-size-mismatch", Safetensors, High,
        summary: "safetensors byte count disagrees with dtype and shape",
        help: "The bytes between a tensor's data offsets are not its dtype's size times its \
               number of elements, or not a whole number of bytes for sub-byte dtypes. The \
               reference loader refuses the file; lenient loaders read too little or too much. \
               Export the file again.";
    SafetensorsOverlap = "safetensors-overlap", Safetensors, High,
        summary: "safetensors tensors overlap",
        help: "Two tensors' byte ranges overlap, so the same bytes are read as two tensors and \
               changing one changes the other. The reference loader refuses the file. Export the \
               file again.";
    SafetensorsGap = "safetensors-gap", Safetensors, High,
        summary: "safetensors data section has bytes no tensor covers",
        help: "Bytes between two tensors belong to neither: hidden data that no tool shows. The \
               reference loader refuses the file. Export the file again.";
    SafetensorsTrailingBytes = "safetensors-trailing-bytes", Safetensors, Medium,
        summary: "safetensors file has bytes after the last tensor",
        help: "Bytes after the last tensor belong to no tensor: trailing data that loaders ignore \
               or refuse, often an appended payload or a botched concatenation. Exporting the \
               file again drops it.";
    SafetensorsBadMetadata = "safetensors-bad-metadata", Safetensors, High,
        summary: "safetensors __metadata__ is not a string map",
        help: "`__metadata__` must map strings to strings (or be null); the reference loader \
               refuses anything else. Export the file again with string metadata.";

    // ----- ONNX -------------------------------------------------------------------------------
    OnnxMalformed = "onnx-malformed", Onnx, High,
        summary: "ONNX model is not well-formed protobuf",
        help: "The model does not parse as a protobuf `ModelProto`: a field is cut off or has the \
               wrong wire type, or graphs nest deeper than the scanner follows. Loaders may read \
               it differently or not at all, and the checks of the rest are incomplete. Export \
               the model again.";
    OnnxExternalData = "onnx-external-data", Onnx, Info,
        summary: "ONNX graph reads tensor data from other files",
        help: "Tensors keep their data in files next to the model. Those files are part of the \
               model: hash, sign and scan them together with it. Informational.";
    OnnxExternalDataAbsolute = "onnx-external-data-absolute", Onnx, Critical,
        summary: "ONNX external data path is absolute",
        help: "A tensor's external data location is an absolute path, a drive, a UNC path or a \
               URL. Loading the model reads that file, wherever it is on the machine, into the \
               model, where its contents can leak through the model's outputs. Do not load the \
               model; external data must be relative paths inside the model's folder.";
    OnnxExternalDataTraversal = "onnx-external-data-traversal", Onnx, Critical,
        summary: "ONNX external data path escapes the model's folder",
        help: "A tensor's external data location climbs out of the model's folder with `..`, so \
               loading the model reads a file outside it into the model, where its contents can \
               leak through the model's outputs. Do not load the model.";
    OnnxExternalDataDotDot = "onnx-external-data-dotdot", Onnx, Medium,
        summary: "ONNX external data path uses `..`",
        help: "The location contains `..` but stays inside the model's folder. onnx's checker \
               refuses such paths and they are a traversal idiom; rewrite the path without `..`.";
    OnnxExternalDataMalformed = "onnx-external-data-malformed", Onnx, High,
        summary: "ONNX external data reference is malformed",
        help: "A tensor marked as external names no location or an empty one (medium), or a \
               location with a NUL byte or invalid UTF-8 (high), which different loaders truncate \
               or decode differently, so they read different files. Export the model again.";
    OnnxExternalDataLink = "onnx-external-data-link", Onnx, High,
        summary: "ONNX external data is reached through a symbolic or hard link",
        help: "A tensor's external data file, or a folder on the way to it, is a symbolic link, \
               or the file has other hard links. The runtime follows links, so it reads whatever \
               the link points to (a file outside the model's folder, a secret on the machine), \
               not the file a reviewer or a manifest sees next to the model. Replace the link \
               with a copy of the data file.";
    OnnxCustomDomain = "onnx-custom-domain", Onnx, Medium,
        summary: "ONNX model imports a non-standard operator domain",
        help: "The model's operator set imports include a domain that is not an ONNX standard \
               domain. Its operators need a custom operator library, native code that the \
               runtime loads. Find out which library provides the domain and whether you trust \
               it.";
    OnnxCustomOp = "onnx-custom-op", Onnx, Medium,
        summary: "ONNX node uses a custom operator",
        help: "A node's operator is in a non-standard domain and is not a function defined in the \
               model, so running it loads a custom operator library (native code). Make sure that \
               library comes from a source you trust.";
    OnnxLocalFunction = "onnx-local-function", Onnx, Low,
        summary: "ONNX node uses a model-local function",
        help: "The operator is a function defined inside the model and built from other \
               operators, so no native code is involved. Reported because a reviewer has to read \
               the function to know what the node does.";

    // ----- GGUF -------------------------------------------------------------------------------
    GgufMalformed = "gguf-malformed", Gguf, High,
        summary: "GGUF file cannot be parsed",
        help: "Cannot verify: the GGUF header or metadata is cut off, has an unknown value type, \
               or declares counts or lengths beyond the file or the scanner's limits. Loaders \
               (llama.cpp, the gguf package) refuse or misread it, and its chat template could \
               not be checked. Download the file again.";
    GgufTemplateInjection = "gguf-template-injection", Gguf, Critical,
        summary: "GGUF chat template reaches Python internals",
        help: "A `tokenizer.chat_template` (a Jinja program that Python runtimes render with the \
               conversation) uses names that escape Jinja's data model (`__class__`, \
               `__globals__`, `__subclasses__`, `__builtins__`, `__import__`, `mro`, `|attr` with \
               dunder strings, `os.popen`, `eval`, `exec` …): server-side template injection, \
               code execution when a chat is formatted. Do not serve the model with this \
               template; replace it with the upstream template.";
    GgufTemplateSuspicious = "gguf-template-suspicious", Gguf, High,
        summary: "GGUF chat template uses unusual constructs",
        help: "The chat template calls `attr`, builds strings with `~` or `format` into \
               attribute names, or reaches `self`/`cycler`/`joiner`/`namespace` objects, \
               constructs used to assemble template-injection payloads piece by piece. Compare \
               the template with the upstream one.";

    // ----- Keras and HDF5 ---------------------------------------------------------------------
    KerasLambda = "keras-lambda", Keras, Critical,
        summary: "Keras model contains a Lambda layer",
        help: "A `Lambda` layer stores a Python function as marshalled bytecode (or source) in \
               the model config; `keras.models.load_model` rebuilds and runs it (safe mode only \
               guards `.keras` files in recent Keras versions; legacy `.h5` loading does not). \
               Code execution on load. Do not load the model; rebuild the layer in code you \
               control.";
    KerasUnknownModule = "keras-unknown-module", Keras, High,
        summary: "Keras config references code outside Keras",
        help: "A layer, object or function in the model config is named by a `module` or a \
               registered name outside Keras and its known companions, so loading imports that \
               module and calls the class. Check the named code before loading; models from \
               stock layers need none.";
    KerasMalformed = "keras-malformed", Keras, High,
        summary: "Keras or HDF5 model config cannot be verified",
        help: "Cannot verify: a `.keras` archive without a readable `config.json`, or an HDF5 \
               file naming a `model_config` in which no config JSON could be read, a config-like \
               object does not parse (`json.loads` also accepts NaN), or Lambda markers \
               (`Lambda`, `__lambda__`, `function_type`, `marshal`) sit outside every config \
               read. gauntlet does not parse HDF5 fully; it searches the file for the config, \
               since Lambda layers and custom objects live there. Convert the weights to \
               safetensors, or review the model by other means.";

    // ----- Files and limits -------------------------------------------------------------------
    ModelIdLookalike = "model-id-lookalike", Identity, High,
        summary: "model id reads as a well-known one but is a different id",
        help: "The id differs from a well-known hub id only by characters a reader cannot tell \
               apart (look-alike letters from other scripts, 0 for o, 1 or I for l, rn for m, \
               separators). That is how typosquatted repositories are named. Check which \
               repository you meant; add your own ids with --known-model-ids.";
    ModelIdTyposquat = "model-id-typosquat", Identity, High,
        summary: "model id is a small edit away from a well-known one",
        help: "The id is one or two edits (a swapped, doubled, missing or changed letter) from a \
               well-known hub id, so a typo may be downloading someone else's model. Check the \
               id; if it is your own model, add it to the known ids (--known-model-ids, \
               model.known_ids).";
    UnidentifiedModelContent = "unidentified-model-content", Files, High,
        summary: "model content not identified (cannot verify)",
        help: "The file's name (`.pt`, `.bin`, `.gguf`, …) or the archive it sits in says it is \
               model data, but the content matches no format gauntlet checks, so it was not \
               verified. A loader will still read it with whatever deserialiser it picks, so an \
               unverifiable model file fails the default gate. Convert the model to a checked \
               format (safetensors), or review it by other means.";
    CompressedTrailingData = "compressed-trailing-data", Files, Info,
        summary: "bytes after the last compressed stream are not another stream",
        help: "The file's compressed streams inflate completely, and what follows them is not \
               another stream of the same kind: gzip stops with an error there, bz2, xz and lzma \
               files stop reading, so no loader decompresses those bytes. Everything before \
               them was checked. Informational.";

    CompressedUnsupported = "compressed-unsupported", Files, High,
        summary: "compressed file cannot be decompressed and verified",
        help: "Cannot verify: the file is a compressed stream joblib reads back transparently \
               (`joblib.dump(..., compress=…)`), and it could not be checked: an lz4 frame, \
               which gauntlet does not decompress, or a zlib, gzip, bz2, xz, lzma or joblib `ZF` \
               stream that does not decompress, needs a dictionary above the limit, or inflates \
               past the limit. A loader reading it as a stream acts on everything before the \
               error. Re-save the file, with zlib, gzip, bz2, xz, lzma or lz4 compression or none, or \
               convert the weights to safetensors.";
    UnidentifiedFile = "unidentified-file", Files, Medium,
        summary: "file format not identified",
        help: "The content matches no format gauntlet checks (zip, tar, NumPy, safetensors, \
               pickle, ONNX), so it was not verified. Formats are identified by content, never by \
               name; a model file that matches none may be disguised. If the file is not model \
               code or weights (a README, a tokenizer), review it by other means.";
    FileTooLarge = "file-too-large", Files, High,
        summary: "file too large to scan",
        help: "The file is larger than the scanner's limit for reading a file whole, so it was \
               not scanned: high (cannot verify) when its name says it is a model, medium \
               otherwise. safetensors and GGUF files are exempt because only their header and \
               metadata are read. Raise the limit, or convert the model to safetensors.";
    SymlinkNotFollowed = "symlink-not-followed", Files, Low,
        summary: "symbolic link not followed",
        help: "Links are reported, never followed, so whatever this one points to was not \
               scanned. A link in a model folder can make a loader read files outside it. Replace \
               the link with the file, or scan its target separately.";
    NotARegularFile = "not-a-regular-file", Files, Low,
        summary: "not a regular file",
        help: "A FIFO, socket or device in the scanned tree. It was not read (opening a FIFO \
               would block forever); model folders should hold only files and folders.";
    NestingTooDeep = "nesting-too-deep", Files, High,
        summary: "containers nest deeper than the scanner follows",
        help: "An archive member, or a pickle inside a pickle, sits more containers deep than the \
               scanner follows, so it was not checked. Zip quines and pickle-in-pickle chains \
               nest deeply to get past scanners with a depth limit; real checkpoints nest two or \
               three levels. Treat the file as untrusted.";
    FindingsTruncated = "findings-truncated", Files, Info,
        summary: "more findings than listed",
        help: "A file produced more findings than a report lists for it (per file for \
               safetensors, per rule for ONNX); this finding counts the rest, so a crafted file \
               cannot flood the report. Fix the listed problems first: the file is already \
               suspect.";
}

impl RuleId {
    /// The most severe level the scanners report this rule at.
    pub const fn default_severity(self) -> Severity {
        self.rule().default_severity
    }

    /// One line, for SARIF's `shortDescription` and listings.
    pub const fn summary(self) -> &'static str {
        self.rule().summary
    }

    /// What the finding means, why it matters and what to do.
    pub const fn help(self) -> &'static str {
        self.rule().help
    }

    /// Which scanner reports the rule.
    pub const fn group(self) -> RuleGroup {
        self.rule().group
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serialised as its id string, so JSON findings keep the field they always had.
impl Serialize for RuleId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Only ids in the registry deserialise: a report naming an unknown rule came from a different
/// version of gauntlet, or was edited, and is refused rather than misread.
impl<'de> Deserialize<'de> for RuleId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The rule reference as Markdown: one table per [`RuleGroup`] with each rule's id, default
/// severity, summary and help. `docs/scanner.md` holds this text between marker comments (a test
/// fails when it is stale); `gauntlet list rules --markdown` prints it.
pub fn rules_markdown() -> String {
    let mut out = String::new();
    for group in RuleGroup::ALL {
        let mut rules = RULES.iter().filter(|rule| rule.group == group).peekable();
        if rules.peek().is_none() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "### {}\n\n| rule | default severity | description |\n|---|---|---|\n",
            group.title()
        );
        for rule in rules {
            let _ = writeln!(
                out,
                "| `{}` | {} | **{}.** {} |",
                rule.id,
                rule.default_severity,
                markdown_cell(&capitalised(rule.summary)),
                markdown_cell(rule.help),
            );
        }
    }
    out
}

/// `text` with its first letter upper case, for a summary that starts a sentence.
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `text` made safe for one Markdown table cell: pipes escaped, no line breaks.
fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enum_and_the_table_agree() {
        assert_eq!(RULES.len(), RuleId::ALL.len());
        for (rule, id) in RULES.iter().zip(RuleId::ALL) {
            assert_eq!(rule.id, *id);
            assert_eq!(id.rule(), rule);
        }
    }

    #[test]
    fn ids_round_trip_through_text() {
        for id in RuleId::ALL {
            assert_eq!(id.as_str().parse::<RuleId>(), Ok(*id));
            assert_eq!(id.to_string(), id.as_str());
        }
        assert_eq!(
            "pickle-dangerous-globals".parse::<RuleId>(),
            Err(UnknownRule("pickle-dangerous-globals".to_string()))
        );
    }

    #[test]
    fn capitalised_upper_cases_the_first_letter_only() {
        assert_eq!(capitalised("safetensors header"), "Safetensors header");
        assert_eq!(capitalised("ONNX model"), "ONNX model");
        assert_eq!(capitalised(""), "");
    }
}
