//! Reading Rust text without a parser: comments, strings and char literals blanked (newlines
//! kept, so lines still count), then tokens, brace matching, and the functions with bodies
//! outside `#[cfg(test)]` items.

/// The text with comments, strings and char literals blanked to spaces, newlines kept, so
/// that what is left has only the code's own braces and paths, on their own lines.
pub fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, from: &[char]| out.extend(from.iter().map(|c| if *c == '\n' { '\n' } else { ' ' }));
    let mut index = 0;
    while index < chars.len() {
        let rest = &chars[index..];
        let after_ident = index > 0 && is_ident(chars[index - 1]);
        let end = if rest.starts_with(&['/', '/']) {
            rest.iter().position(|c| *c == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            block_comment_end(rest)
        } else if let Some(end) = (!after_ident).then(|| raw_string_end(rest)).flatten() {
            end
        } else if rest[0] == '"' {
            string_end(rest)
        } else if rest[0] == '\'' {
            char_literal_end(rest).unwrap_or(1)
        } else {
            out.push(rest[0]);
            index += 1;
            continue;
        };
        if rest[0] == '\'' && end == 1 {
            out.push('\''); // a lifetime
        } else {
            blank(&mut out, &rest[..end]);
        }
        index += end;
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The length of a block comment at the start of `text`; they nest.
fn block_comment_end(text: &[char]) -> usize {
    let (mut depth, mut index) = (0, 0);
    while index < text.len() {
        if text[index..].starts_with(&['/', '*']) {
            depth += 1;
            index += 2;
        } else if text[index..].starts_with(&['*', '/']) {
            depth -= 1;
            index += 2;
            if depth == 0 {
                return index;
            }
        } else {
            index += 1;
        }
    }
    text.len()
}

/// The length of a raw string (`r"…"`, `r#"…"#`, `br"…"`) at the start of `text`, if one is.
fn raw_string_end(text: &[char]) -> Option<usize> {
    let start = match text {
        ['r', ..] => 1,
        ['b', 'r', ..] => 2,
        _ => return None,
    };
    let hashes = text[start..].iter().take_while(|c| **c == '#').count();
    if text.get(start + hashes) != Some(&'"') {
        return None;
    }
    let closing: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
    let body = start + hashes + 1;
    let close = text[body..].windows(closing.len()).position(|window| window == closing.as_slice());
    Some(close.map_or(text.len(), |close| body + close + closing.len()))
}

/// The length of a string at the start of `text`, escapes included.
fn string_end(text: &[char]) -> usize {
    let mut index = 1;
    while index < text.len() {
        match text[index] {
            '\\' => index += 2,
            '"' => return index + 1,
            _ => index += 1,
        }
    }
    text.len()
}

/// The length of a char literal at the start of `text`, or None for a lifetime (`'a`).
fn char_literal_end(text: &[char]) -> Option<usize> {
    match text {
        ['\'', '\\', _, rest @ ..] => rest.iter().position(|c| *c == '\'').map(|close| close + 4),
        ['\'', _, '\'', ..] => Some(3),
        _ => None,
    }
}

pub struct Token {
    pub text: String,
    pub line: usize,
}

/// The identifiers (raw ones without their `r#`), `::`, and single punctuation characters of
/// stripped code.
pub fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let (mut tokens, mut index, mut line) = (Vec::new(), 0, 1);
    while index < chars.len() {
        let c = chars[index];
        if c == '\n' {
            line += 1;
            index += 1;
        } else if c.is_whitespace() {
            index += 1;
        } else if is_ident(c) {
            if chars[index..].starts_with(&['r', '#']) && chars.get(index + 2).is_some_and(|c| is_ident(*c)) {
                index += 2;
            }
            let start = index;
            while index < chars.len() && is_ident(chars[index]) {
                index += 1;
            }
            tokens.push(Token { text: chars[start..index].iter().collect(), line });
        } else if chars[index..].starts_with(&[':', ':']) {
            tokens.push(Token { text: "::".into(), line });
            index += 2;
        } else {
            tokens.push(Token { text: c.to_string(), line });
            index += 1;
        }
    }
    tokens
}

pub fn is_ident_token(token: &Token) -> bool {
    token.text.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The index of the `}` that closes the `{` at `open`.
pub fn closing_brace(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (index, token) in tokens.iter().enumerate().skip(open) {
        match token.text.as_str() {
            "{" => depth += 1,
            "}" if depth == 1 => return index,
            "}" => depth -= 1,
            _ => {}
        }
    }
    tokens.len() - 1
}

/// Where the item whose header starts at `start` ends: the index of its `;` or of the `}`
/// closing its body, and the index of the body's `{` if it has one.
fn item_end(tokens: &[Token], start: usize) -> (usize, Option<usize>) {
    let mut depth = 0;
    for (index, token) in tokens.iter().enumerate().skip(start) {
        match token.text.as_str() {
            "(" | "[" => depth += 1,
            ")" | "]" => depth -= 1,
            "{" if depth == 0 => return (closing_brace(tokens, index), Some(index)),
            ";" if depth == 0 => return (index, None),
            _ => {}
        }
    }
    (tokens.len() - 1, None)
}

pub struct Function {
    pub name: String,
    /// The lines of `fn` and of the body's closing brace.
    pub start: usize,
    pub end: usize,
}

impl Function {
    pub fn lines(&self) -> usize {
        self.end - self.start + 1
    }
}

/// Every function with a body, nested ones too, outside items marked `#[cfg(test)]`.
pub fn functions(tokens: &[Token]) -> Vec<Function> {
    let text = |index: usize| tokens.get(index).map_or("", |token: &Token| token.text.as_str());
    let mut found = Vec::new();
    let mut index = 0;
    while index < tokens.len() {
        let cfg_test = ["#", "[", "cfg", "(", "test", ")", "]"].iter().enumerate().all(|(offset, want)| text(index + offset) == *want);
        if cfg_test {
            index = item_end(tokens, index + 7).0 + 1;
            continue;
        }
        if text(index) == "fn" && tokens.get(index + 1).is_some_and(is_ident_token) {
            if let (end, Some(_)) = item_end(tokens, index + 2) {
                found.push(Function { name: text(index + 1).to_owned(), start: tokens[index].line, end: tokens[end].line });
            }
        }
        index += 1;
    }
    found
}

#[test]
fn the_scanner_skips_comments_strings_and_test_code() {
    let code = "//! x\nfn a() {\n    let s = \"}\"; let c = '}'; let r = r#\"}\"#;\n    /* } /* } */ } */\n    // }\n}\n\
                fn b<'a>(x: &'a str) -> &'a str { x }\ntrait T { fn c(&self); }\n#[cfg(test)]\nmod tests {\n    fn d() {}\n}\n";
    let found: Vec<(String, usize, usize)> =
        functions(&tokens(&strip(code))).into_iter().map(|function| (function.name, function.start, function.end)).collect();
    assert_eq!(found, [("a".to_owned(), 2, 6), ("b".to_owned(), 7, 7)]);
}
