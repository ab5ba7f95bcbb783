//! A token-level check of Jinja templates (GGUF chat templates), robust to the obfuscations that
//! defeat substring matching.
//!
//! Every Jinja template-injection payload has to read an attribute whose name starts with an
//! underscore (`__class__`, `__globals__`, `__subclasses__`, `_TemplateReference__context`).
//! Jinja offers a handful of ways to name an attribute: `x.name`, `x['name']` (its getitem falls
//! back to getattr), the `attr` filter, and the filters that take an attribute name (`map`,
//! `selectattr`, `sort`, …). The template is tokenised as Jinja tokenises it (string literals
//! decoded with Python's escapes, so `\x5f`, `\u005f` and `\U0000005f` are all `_`), and:
//!
//! - a name or literal attribute that starts with `_`, or a string literal holding `__`, is
//!   injection;
//! - the `attr` filter, and the globals that exist only to reach Python objects (`lipsum`,
//!   `cycler`, `joiner`, `self`, `config`, `request`, …), are injection;
//! - an attribute named by a computed string — a subscript or attribute-filter argument built
//!   with `~`, `+`, `*`, `%` or a filter, or held in a variable that was assigned from one — is
//!   injection, since the computation is how a dunder is assembled out of harmless pieces;
//! - a macro's result is such a string, and so is a macro parameter that a call passes one;
//! - what cannot be tokenised (an unterminated tag or string, a `\N{…}` escape, whose name
//!   table the scanner does not carry) cannot be verified, and is reported as such.
//!
//! Legitimate chat templates (Llama 3, ChatML, Mistral, Gemma, Qwen with tools) subscript with
//! literal keys, numbers and loop variables, and build strings only to print them.

use std::collections::HashSet;

/// Why a template fails the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A construct that reaches Python objects' internals.
    Injection(String),
    /// The template could not be tokenised; whatever it does was not checked.
    Unreadable(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Str(String),
    Number,
    Op(String),
}

/// Globals that Jinja (or Flask) puts in reach and that only payloads use: their functions'
/// `__globals__` lead to `os`.
const PAYLOAD_GLOBALS: &[&str] = &[
    "lipsum",
    "cycler",
    "joiner",
    "self",
    "config",
    "request",
    "session",
    "url_for",
    "get_flashed_messages",
    "g",
];

/// Attributes of frames, generators and tracebacks that lead to a module's globals without an
/// underscore.
const FRAME_ATTRIBUTES: &[&str] = &[
    "f_globals",
    "f_builtins",
    "f_back",
    "f_locals",
    "gi_frame",
    "cr_frame",
    "ag_frame",
    "tb_frame",
    "func_globals",
];

/// Marks a macro's name in the taint set (not a name a template can spell).
const MACRO: &str = "macro()";

/// Jinja keywords after which `[` opens a list, not a subscript.
const KEYWORDS: &[&str] = &[
    "in", "if", "else", "elif", "and", "or", "not", "is", "for", "set", "with", "return", "import",
    "from", "as", "call", "filter", "print", "do",
];

/// Filters that take an attribute name and read it with Jinja's getattr.
const ATTRIBUTE_FILTERS: &[&str] = &[
    "map",
    "selectattr",
    "rejectattr",
    "sort",
    "groupby",
    "sum",
    "unique",
    "min",
    "max",
];

/// Filters whose result is a string built at run time (or a sequence of pieces of one).
const STRING_FILTERS: &[&str] = &[
    "string",
    "join",
    "format",
    "replace",
    "reverse",
    "lower",
    "upper",
    "title",
    "capitalize",
    "trim",
    "first",
    "last",
    "list",
    "batch",
    "slice",
    "center",
    "indent",
    "wordwrap",
    "urlencode",
    "pprint",
    "safe",
    "e",
    "escape",
    "forceescape",
    "striptags",
    "truncate",
    "random",
    "xmlattr",
    "filesizeformat",
];

/// Check one template.
pub fn check(template: &str) -> Option<Verdict> {
    let tags = match tags(template) {
        Ok(tags) => tags,
        Err(reason) => return Some(Verdict::Unreadable(reason)),
    };
    let mut tokenised = Vec::new();
    for tag in &tags {
        match tokenise(tag) {
            Ok(tokens) => tokenised.push(tokens),
            Err(reason) => return Some(Verdict::Unreadable(reason)),
        }
    }
    let tainted = tainted_names(&tokenised);
    for tokens in &tokenised {
        if let Some(reason) = check_tokens(tokens, &tainted) {
            return Some(Verdict::Injection(reason));
        }
    }
    None
}

/// The inside of every `{{ … }}` and `{% … %}` tag, in order (comments and `raw` blocks
/// skipped).
fn tags(template: &str) -> Result<Vec<String>, String> {
    let bytes = template.as_bytes();
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut raw = false;
    while let Some(open) = find(bytes, at, b"{") {
        let kind = bytes.get(open + 1).copied();
        match kind {
            Some(b'#') if !raw => {
                let end = find(bytes, open + 2, b"#}").ok_or("an unterminated {# comment")?;
                at = end + 2;
            }
            Some(b'{') | Some(b'%') if !raw || kind == Some(b'%') => {
                let close: &[u8] = if kind == Some(b'{') { b"}}" } else { b"%}" };
                let end = tag_end(bytes, open + 2, close)
                    .ok_or("an unterminated tag (or a string inside it)")?;
                let inner = String::from_utf8_lossy(bytes.get(open + 2..end).unwrap_or(&[]));
                let inner = inner.trim_matches(|ch: char| ch == '-' || ch == '+');
                let inner = inner.trim();
                let is_statement = kind == Some(b'%');
                let first_word = inner.split_whitespace().next().unwrap_or("");
                if raw {
                    if is_statement && first_word == "endraw" {
                        raw = false;
                    }
                } else if is_statement && first_word == "raw" {
                    raw = true;
                } else {
                    out.push(if is_statement {
                        format!("%{inner}")
                    } else {
                        inner.to_string()
                    });
                }
                at = end + 2;
            }
            _ => at = open + 1,
        }
    }
    if raw {
        return Err("an unterminated {% raw %} block".to_string());
    }
    Ok(out)
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let rest = bytes.get(from..)?;
    rest.windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + from)
}

/// Where the closing delimiter of a tag starts, skipping string literals inside it.
fn tag_end(bytes: &[u8], from: usize, close: &[u8]) -> Option<usize> {
    let mut at = from;
    while at < bytes.len() {
        let byte = *bytes.get(at)?;
        if byte == b'\'' || byte == b'"' {
            at += 1;
            while *bytes.get(at)? != byte {
                if *bytes.get(at)? == b'\\' {
                    at += 1;
                }
                at += 1;
            }
            at += 1;
            continue;
        }
        if bytes.get(at..at + close.len()) == Some(close) {
            return Some(at);
        }
        at += 1;
    }
    None
}

fn tokenise(tag: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = tag.chars().collect();
    let mut tokens = Vec::new();
    let mut at = 0usize;
    while let Some(&ch) = chars.get(at) {
        if ch.is_whitespace() {
            at += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let start = at;
            while chars
                .get(at)
                .is_some_and(|ch| ch.is_alphanumeric() || *ch == '_')
            {
                at += 1;
            }
            tokens.push(Token::Name(
                chars.get(start..at).unwrap_or(&[]).iter().collect(),
            ));
        } else if ch.is_ascii_digit() {
            while chars
                .get(at)
                .is_some_and(|ch| ch.is_ascii_alphanumeric() || *ch == '.' || *ch == '_')
            {
                at += 1;
            }
            tokens.push(Token::Number);
        } else if ch == '\'' || ch == '"' {
            let (text, end) = string_literal(&chars, at)?;
            tokens.push(Token::Str(text));
            at = end;
        } else {
            let two: String = chars.get(at..at + 2).unwrap_or(&[]).iter().collect();
            if matches!(two.as_str(), "==" | "!=" | "<=" | ">=" | "//" | "**") {
                tokens.push(Token::Op(two));
                at += 2;
            } else {
                tokens.push(Token::Op(ch.to_string()));
                at += 1;
            }
        }
    }
    Ok(tokens)
}

/// A quoted literal decoded as Jinja decodes it (Python's `unicode-escape`); returns the text
/// and the index after the closing quote.
fn string_literal(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let quote = chars.get(start).copied().unwrap_or('"');
    let mut out = String::new();
    let mut at = start + 1;
    loop {
        let ch = *chars.get(at).ok_or("an unterminated string literal")?;
        at += 1;
        if ch == quote {
            return Ok((out, at));
        }
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        let escaped = *chars.get(at).ok_or("an unterminated string literal")?;
        at += 1;
        let hex = |at: &mut usize, digits: usize| -> Result<char, String> {
            let text: String = chars.get(*at..*at + digits).unwrap_or(&[]).iter().collect();
            *at += digits;
            u32::from_str_radix(&text, 16)
                .ok()
                .filter(|_| text.len() == digits)
                .and_then(char::from_u32)
                .ok_or_else(|| "a malformed \\x, \\u or \\U escape".to_string())
        };
        match escaped {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '\n' => {}
            '\\' | '\'' | '"' => out.push(escaped),
            'x' => out.push(hex(&mut at, 2)?),
            'u' => out.push(hex(&mut at, 4)?),
            'U' => out.push(hex(&mut at, 8)?),
            'N' => {
                return Err(
                    "a \\N{…} escape in a string literal, which the scanner does not decode"
                        .to_string(),
                )
            }
            '0'..='7' => {
                let mut value = escaped.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.get(at).and_then(|ch| ch.to_digit(8)) {
                        Some(digit) => {
                            value = value * 8 + digit;
                            at += 1;
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(value).ok_or("an octal escape names no character")?);
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
}

/// Whether `tokens` build a string at run time: concatenation, repetition or formatting with a
/// string literal, a string-producing filter, a subscript of a literal, or a tainted name.
fn builds_string(tokens: &[Token], tainted: &HashSet<String>) -> bool {
    let has_str = tokens.iter().any(|token| matches!(token, Token::Str(_)));
    for (index, token) in tokens.iter().enumerate() {
        match token {
            Token::Op(op) if op == "~" => return true,
            Token::Op(op) if has_str && matches!(op.as_str(), "+" | "*" | "%") => return true,
            Token::Op(op) if op == "|" => {
                if let Some(Token::Name(filter)) = tokens.get(index + 1) {
                    if STRING_FILTERS.contains(&filter.as_str()) {
                        return true;
                    }
                }
            }
            Token::Op(op) if op == "[" => {
                if matches!(
                    index.checked_sub(1).and_then(|i| tokens.get(i)),
                    Some(Token::Str(_))
                ) {
                    return true;
                }
            }
            Token::Name(name) if tainted.contains(name) => return true,
            // A macro's result is the text it renders: a string built at run time.
            Token::Name(name)
                if (name == "caller" || tainted.contains(&format!("{MACRO}{name}")))
                    && matches!(tokens.get(index + 1), Some(Token::Op(open)) if open == "(") =>
            {
                return true
            }
            _ => {}
        }
    }
    // `ns.key` where `ns.key` was assigned a built string.
    tokens.windows(3).any(|window| match window {
        [Token::Name(base), Token::Op(dot), Token::Name(attr)] if dot == "." => {
            tainted.contains(&format!("{base}.{attr}"))
        }
        _ => false,
    })
}

/// Names (and `ns.attr` targets) assigned a string built at run time: `set`, `for`, `with`,
/// and block `set` (whose body is arbitrary text). Iterated until nothing changes.
fn tainted_names(tags: &[Vec<Token>]) -> HashSet<String> {
    let mut tainted = HashSet::new();
    // Macros: their names (marked, so calls count as built strings) and parameters.
    let mut macros: Vec<(String, Vec<String>)> = Vec::new();
    for tokens in tags {
        if let [Token::Op(percent), Token::Name(keyword), Token::Name(name), rest @ ..] =
            tokens.as_slice()
        {
            if percent == "%" && keyword == "macro" {
                tainted.insert(format!("{MACRO}{name}"));
                let params = rest
                    .iter()
                    .enumerate()
                    .filter_map(|(index, token)| match (token, rest.get(index + 1)) {
                        (Token::Name(param), Some(Token::Op(next)))
                            if next == "," || next == ")" || next == "=" =>
                        {
                            Some(param.clone())
                        }
                        _ => None,
                    })
                    .collect();
                macros.push((name.clone(), params));
            }
        }
    }
    for _ in 0..8 {
        let before = tainted.len();
        // A macro called with a built string taints its parameters.
        for tokens in tags {
            for (index, token) in tokens.iter().enumerate() {
                let Token::Name(called) = token else {
                    continue;
                };
                let Some((_, params)) = macros.iter().find(|(name, _)| name == called) else {
                    continue;
                };
                if !matches!(tokens.get(index + 1), Some(Token::Op(open)) if open == "(") {
                    continue;
                }
                if builds_string(bracketed(tokens, index + 1), &tainted) {
                    tainted.extend(params.iter().cloned());
                }
            }
        }
        for tokens in tags {
            let Some(Token::Op(percent)) = tokens.first() else {
                continue;
            };
            if percent != "%" {
                continue;
            }
            let rest = tokens.get(1..).unwrap_or(&[]);
            match rest.first() {
                Some(Token::Name(keyword)) if keyword == "set" || keyword == "with" => {
                    let body = rest.get(1..).unwrap_or(&[]);
                    let equals = body
                        .iter()
                        .position(|token| matches!(token, Token::Op(op) if op == "="));
                    let (targets, value) = match equals {
                        Some(at) => (
                            body.get(..at).unwrap_or(&[]),
                            body.get(at + 1..).unwrap_or(&[]),
                        ),
                        // `{% set x %}…{% endset %}`: the body is text of any kind.
                        None => (body, &[][..]),
                    };
                    if equals.is_none() || builds_string(value, &tainted) {
                        tainted.extend(target_names(targets));
                    }
                }
                Some(Token::Name(keyword)) if keyword == "for" => {
                    let body = rest.get(1..).unwrap_or(&[]);
                    let in_at = body
                        .iter()
                        .position(|token| matches!(token, Token::Name(name) if name == "in"));
                    if let Some(in_at) = in_at {
                        if builds_string(body.get(in_at + 1..).unwrap_or(&[]), &tainted) {
                            tainted.extend(target_names(body.get(..in_at).unwrap_or(&[])));
                        }
                    }
                }
                _ => {}
            }
        }
        if tainted.len() == before {
            break;
        }
    }
    tainted
}

/// `x`, `a, b`, `ns.attr` as assignment targets.
fn target_names(tokens: &[Token]) -> Vec<String> {
    let mut names = Vec::new();
    let mut index = 0;
    while let Some(token) = tokens.get(index) {
        if let Token::Name(name) = token {
            match (tokens.get(index + 1), tokens.get(index + 2)) {
                (Some(Token::Op(dot)), Some(Token::Name(attr))) if dot == "." => {
                    names.push(format!("{name}.{attr}"));
                    index += 3;
                    continue;
                }
                _ => names.push(name.clone()),
            }
        }
        index += 1;
    }
    names
}

/// The tokens between `tokens[open]` (an opening bracket) and its match.
fn bracketed(tokens: &[Token], open: usize) -> &[Token] {
    let (left, right) = match tokens.get(open) {
        Some(Token::Op(op)) if op == "[" => ("[", "]"),
        _ => ("(", ")"),
    };
    let mut depth = 0usize;
    for (index, token) in tokens.iter().enumerate().skip(open) {
        if let Token::Op(op) = token {
            if op == left {
                depth += 1;
            } else if op == right {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return tokens.get(open + 1..index).unwrap_or(&[]);
                }
            }
        }
    }
    tokens.get(open + 1..).unwrap_or(&[])
}

fn check_tokens(tokens: &[Token], tainted: &HashSet<String>) -> Option<String> {
    for (index, token) in tokens.iter().enumerate() {
        let previous = index.checked_sub(1).and_then(|i| tokens.get(i));
        match token {
            Token::Name(name) if name.starts_with('_') => {
                return Some(format!(
                    "names `{name}`: names starting with an underscore reach Python internals"
                ));
            }
            Token::Name(name)
                if PAYLOAD_GLOBALS.contains(&name.as_str())
                    && !matches!(previous, Some(Token::Op(op)) if op == ".") =>
            {
                return Some(format!(
                    "uses the global `{name}`, which chat templates never need and payloads use \
                     to reach Python's globals"
                ));
            }
            Token::Name(name)
                if name == "attr" && matches!(previous, Some(Token::Op(op)) if op == "|") =>
            {
                return Some("uses the `attr` filter, which reads any attribute".to_string());
            }
            Token::Name(name)
                if ATTRIBUTE_FILTERS.contains(&name.as_str())
                    && matches!(previous, Some(Token::Op(op)) if op == "|")
                    && matches!(tokens.get(index + 1), Some(Token::Op(op)) if op == "(") =>
            {
                let args = bracketed(tokens, index + 1);
                if let Some(reason) = attribute_arguments(name, args, tainted) {
                    return Some(reason);
                }
            }
            // `map('attr', name)`, `select('attr')`: the filter named by a string.
            Token::Str(text) if text == "attr" => {
                return Some("names the `attr` filter, which reads any attribute".to_string());
            }
            Token::Name(name) if FRAME_ATTRIBUTES.contains(&name.as_str()) => {
                return Some(format!(
                    "names `{name}`, a frame or generator attribute that reaches globals"
                ));
            }
            Token::Str(text) if text.contains("__") => {
                return Some(format!(
                    "a string literal holds `{}`: dunder names reach Python internals",
                    text.escape_debug()
                ));
            }
            Token::Op(op) if op == "[" => {
                let subscript = matches!(
                    previous,
                    Some(Token::Name(name)) if !KEYWORDS.contains(&name.as_str())
                ) || matches!(previous, Some(Token::Str(_)))
                    || matches!(previous, Some(Token::Op(close)) if close == ")" || close == "]");
                if !subscript {
                    continue;
                }
                let inside = bracketed(tokens, index);
                if let [Token::Str(key)] = inside {
                    if key.starts_with('_') {
                        return Some(format!(
                            "subscripts with `{}`, an underscore name (Jinja's getitem falls back to getattr)",
                            key.escape_debug()
                        ));
                    }
                } else if builds_string(inside, tainted) {
                    return Some(
                        "subscripts with a string built at run time: Jinja's getitem falls back \
                         to getattr, so the built name reaches any attribute"
                            .to_string(),
                    );
                }
            }
            Token::Op(op) if op == "." => {
                if let Some(Token::Name(attr)) = tokens.get(index + 1) {
                    if attr == "format" || attr == "mro" {
                        return Some(format!("calls `.{attr}`, which reaches object attributes"));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// The attribute-name arguments of an attribute-taking filter: the first positional one of
/// `selectattr`, `rejectattr`, `groupby`, `map`, `sort` … and any `attribute=`.
fn attribute_arguments(filter: &str, args: &[Token], tainted: &HashSet<String>) -> Option<String> {
    let mut pieces: Vec<&[Token]> = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    for (index, token) in args.iter().enumerate() {
        if let Token::Op(op) = token {
            match op.as_str() {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth = depth.saturating_sub(1),
                "," if depth == 0 => {
                    pieces.push(args.get(start..index).unwrap_or(&[]));
                    start = index + 1;
                }
                _ => {}
            }
        }
    }
    pieces.push(args.get(start..).unwrap_or(&[]));
    for (position, piece) in pieces.iter().enumerate() {
        let value = match piece {
            [Token::Name(key), Token::Op(eq), value @ ..] if eq == "=" => {
                if key != "attribute" {
                    continue;
                }
                value
            }
            // Only these take the attribute as their first positional argument; `map('upper')`
            // names a filter and `sort(true)` is `reverse`.
            _ if position == 0 && matches!(filter, "selectattr" | "rejectattr" | "groupby") => {
                *piece
            }
            _ => continue,
        };
        match value {
            [Token::Str(name)] if name.starts_with('_') => {
                return Some(format!(
                    "`{filter}` reads the attribute `{}`",
                    name.escape_debug()
                ));
            }
            [Token::Str(_)] | [Token::Number] => {}
            _ if builds_string(value, tainted)
                || value.iter().any(|token| matches!(token, Token::Name(_))) =>
            {
                return Some(format!(
                    "`{filter}` reads an attribute whose name is computed at run time"
                ));
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    const MISTRAL: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";
    const GEMMA: &str = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";
    const QWEN_TOOLS: &str = "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}{{- \"\\n\\n# Tools\\n\\n<tools>\" }}{%- for tool in tools %}{{- \"\\n\" }}{{- tool | tojson }}{%- endfor %}{{- \"\\n</tools>\" }}{%- endif %}{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}{%- for message in messages[::-1] %}{%- set index = (messages|length - 1) - loop.index0 %}{%- if ns.multi_step_tool and message.role == \"user\" %}{%- set ns.multi_step_tool = false %}{%- set ns.last_query_index = index %}{%- endif %}{%- endfor %}{%- for message in messages %}{%- if message.role == \"assistant\" and message.tool_calls %}{%- for tool_call in message.tool_calls %}{%- if tool_call.function %}{%- set tool_call = tool_call.function %}{%- endif %}{{- '<tool_call>\\n{\"name\": \"' }}{{- tool_call.name }}{{- '\", \"arguments\": ' }}{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}{%- endfor %}{%- elif message.role == \"tool\" %}{%- if loop.index0 == 0 or messages[loop.index0 - 1].role != \"tool\" %}{{- '<|im_start|>user' }}{%- endif %}{{- message.content }}{%- else %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
    const HERMES_MACRO: &str = "{%- macro json_to_python_type(json_spec) %}{%- set basic_type_map = {\"string\": \"str\", \"number\": \"float\", \"integer\": \"int\", \"boolean\": \"bool\"} %}{%- if basic_type_map[json_spec.type] is defined %}{{- basic_type_map[json_spec.type] }}{%- elif json_spec.type == \"array\" %}{{- \"list[\" + json_to_python_type(json_spec|items) + \"]\" }}{%- else %}{{- \"Any\" }}{%- endif %}{%- endmacro %}{%- for tool in tools %}{{- json_to_python_type(tool.parameters) }}{%- endfor %}";
    const SELECTATTR: &str = "{% set system = messages|selectattr('role', 'equalto', 'system')|list %}{% for m in messages|rejectattr('role', 'equalto', 'system') %}{{ m['content'] }}{% endfor %}{{ messages|map(attribute='content')|join('\\n') }}";

    #[test]
    fn common_chat_templates_pass() {
        for template in [
            LLAMA3,
            CHATML,
            MISTRAL,
            GEMMA,
            QWEN_TOOLS,
            SELECTATTR,
            HERMES_MACRO,
        ] {
            assert_eq!(check(template), None, "{template}");
        }
    }

    #[test]
    fn obfuscated_payloads_are_injection() {
        for template in [
            "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
            "{{ ()['\\x5f\\x5fclass\\x5f\\x5f'] }}",
            "{{ ()['\\u005f\\u005fclass\\u005f\\u005f'] }}",
            "{{ ()['\\U0000005f\\U0000005fclass\\U0000005f\\U0000005f'] }}",
            "{{ ()['\\137\\137class\\137\\137'] }}",
            "{% set u = 'tool_calls'[4] %}{{ ()[u ~ u ~ 'class' ~ u ~ u] }}",
            "{% set u = (raise_exception|string)[13] %}{% set k = u ~ u ~ 'class' ~ u ~ u %}{{ ()[k] }}",
            "{% set ns = namespace(k='') %}{% set ns.k = 'a' ~ 'b' %}{{ ()[ns.k] }}",
            "{% for k in ['a' ~ 'b'] %}{{ ()[k] }}{% endfor %}",
            "{{ messages|attr('x') }}",
            "{{ [()]|map(attribute='_' * 2 ~ 'class' ~ '_' * 2)|list }}",
            "{{ messages|selectattr(k) }}",
            "{{ namespace._TemplateReference__context }}",
            "{{ lipsum }}",
            "{{ '{0.x}'.format(messages) }}",
            "{% set k %}__class__{% endset %}{{ ()[k] }}",
            "{% set u = 'tool_calls'[4] %}{{ [()]|map('attr', u ~ u ~ 'class' ~ u ~ u)|list }}",
            "{{ x.gi_frame.f_back }}",
            "{% macro f(k) %}{{ ()[k] }}{% endmacro %}{{ f('a' ~ 'b') }}",
            "{% macro u() %}x{% endmacro %}{{ ()[u()] }}",
        ] {
            assert!(
                matches!(check(template), Some(Verdict::Injection(_))),
                "{template}: {:?}",
                check(template)
            );
        }
    }

    #[test]
    fn what_cannot_be_tokenised_is_unreadable() {
        for template in [
            "{{ ()['\\N{LOW LINE}'] }}",
            "{{ 'unterminated }}",
            "{% for m in messages %}{{ m",
            "{% raw %}never closed",
        ] {
            assert!(
                matches!(check(template), Some(Verdict::Unreadable(_))),
                "{template}: {:?}",
                check(template)
            );
        }
    }
}
