//! The subset of Go's `text/template` that Fulcio's CI-provider templates use, evaluated over a
//! flat string map (defaults ∪ claims) with `missingkey=error`.
//!
//! Supported: literal text; `{{ .name }}`; `{{ index . "key" }}` (also parenthesised);
//! `{{ if … }}…{{ else if … }}…{{ else }}…{{ end }}` with `eq`/`ne`/`not` and string literals;
//! `{{- ` / ` -}}` trim markers; `{{/* comments */}}`. Anything else is refused when the config
//! is parsed, not when a token arrives.

use std::collections::BTreeMap;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(String),
    Output(Expr),
    If {
        cond: Expr,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    /// `.name`: missing key is an error.
    Field(String),
    /// `"text"`
    Str(String),
    /// `index . "key"`: missing key yields "" (Go's zero value).
    Index(String),
    Eq(Box<Expr>, Box<Expr>),
    Ne(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

/// Why a template could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EvalError {
    /// `.name` with no such claim or default.
    Missing(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Field(String),
    Dot,
    Str(String),
    Ident(String),
    Open,
    Close,
}

/// One `{{ … }}` after tokenising, or text between actions.
enum Piece {
    Text(String),
    Action(Vec<Tok>),
}

impl Template {
    /// Parse `src`. A text without `{{` is a single text node.
    pub(crate) fn parse(src: &str) -> Result<Self, String> {
        let pieces = split(src)?;
        let mut iter = pieces.into_iter().peekable();
        let (nodes, end) = parse_nodes(&mut iter)?;
        match end {
            Terminator::Eof => Ok(Template { nodes }),
            Terminator::Else(_) => Err("{{else}} outside {{if}}".into()),
            Terminator::End => Err("{{end}} without {{if}}".into()),
        }
    }

    pub(crate) fn execute(&self, data: &BTreeMap<String, String>) -> Result<String, EvalError> {
        let mut out = String::new();
        run(&self.nodes, data, &mut out)?;
        Ok(out)
    }
}

fn run(nodes: &[Node], data: &BTreeMap<String, String>, out: &mut String) -> Result<(), EvalError> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Output(e) => out.push_str(&eval(e, data)?),
            Node::If {
                cond,
                then,
                otherwise,
            } => {
                if !eval(cond, data)?.is_empty() {
                    run(then, data, out)?;
                } else {
                    run(otherwise, data, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval(e: &Expr, data: &BTreeMap<String, String>) -> Result<String, EvalError> {
    let truth = |b: bool| if b { "true".to_owned() } else { String::new() };
    Ok(match e {
        Expr::Field(k) => data
            .get(k)
            .cloned()
            .ok_or_else(|| EvalError::Missing(k.clone()))?,
        Expr::Str(s) => s.clone(),
        Expr::Index(k) => data.get(k).cloned().unwrap_or_default(),
        Expr::Eq(a, b) => truth(eval(a, data)? == eval(b, data)?),
        Expr::Ne(a, b) => truth(eval(a, data)? != eval(b, data)?),
        Expr::Not(a) => truth(eval(a, data)?.is_empty()),
    })
}

enum Terminator {
    Eof,
    /// `{{else}}` or `{{else if …}}` (the tokens after `else`).
    Else(Vec<Tok>),
    End,
}

fn parse_nodes(
    iter: &mut std::iter::Peekable<std::vec::IntoIter<Piece>>,
) -> Result<(Vec<Node>, Terminator), String> {
    let mut nodes = Vec::new();
    while let Some(piece) = iter.next() {
        let toks = match piece {
            Piece::Text(t) => {
                nodes.push(Node::Text(t));
                continue;
            }
            Piece::Action(toks) => toks,
        };
        match toks.first() {
            None => {} // comment
            Some(Tok::Ident(k)) if k == "end" => {
                if toks.len() != 1 {
                    return Err("unexpected tokens after end".into());
                }
                return Ok((nodes, Terminator::End));
            }
            Some(Tok::Ident(k)) if k == "else" => {
                return Ok((nodes, Terminator::Else(toks[1..].to_vec())));
            }
            Some(Tok::Ident(k)) if k == "if" => nodes.push(parse_if(&toks[1..], iter)?),
            Some(_) => nodes.push(Node::Output(parse_expr(&toks)?)),
        }
    }
    Ok((nodes, Terminator::Eof))
}

/// After `{{if`: the condition tokens; consumes up to and including the matching `{{end}}`.
fn parse_if(
    cond: &[Tok],
    iter: &mut std::iter::Peekable<std::vec::IntoIter<Piece>>,
) -> Result<Node, String> {
    let cond = parse_expr(cond)?;
    let (then, term) = parse_nodes(iter)?;
    let otherwise = match term {
        Terminator::Eof => return Err("{{if}} without {{end}}".into()),
        Terminator::End => Vec::new(),
        Terminator::Else(rest) if rest.is_empty() => {
            let (nodes, term) = parse_nodes(iter)?;
            match term {
                Terminator::End => nodes,
                Terminator::Eof => return Err("{{if}} without {{end}}".into()),
                Terminator::Else(_) => return Err("two {{else}} in one {{if}}".into()),
            }
        }
        Terminator::Else(rest) => match rest.first() {
            // `else if` shares the outer `end`.
            Some(Tok::Ident(k)) if k == "if" => vec![parse_if(&rest[1..], iter)?],
            _ => return Err("unexpected tokens after else".into()),
        },
    };
    Ok(Node::If {
        cond,
        then,
        otherwise,
    })
}

fn parse_expr(toks: &[Tok]) -> Result<Expr, String> {
    let (e, rest) = parse_cmd(toks)?;
    if !rest.is_empty() {
        return Err(format!("unexpected {:?}", rest[0]));
    }
    Ok(e)
}

/// A command: an operand, or a function (`index`, `eq`, `ne`, `not`) with its arguments.
fn parse_cmd(toks: &[Tok]) -> Result<(Expr, &[Tok]), String> {
    match toks.first() {
        Some(Tok::Ident(f)) => {
            let (args, rest) = parse_args(&toks[1..])?;
            let e = match (f.as_str(), args.as_slice()) {
                ("index", [Arg::Dot, Arg::Expr(Expr::Str(k))]) => Expr::Index(k.clone()),
                ("index", _) => return Err("only `index . \"key\"` is supported".into()),
                ("eq", [Arg::Expr(a), Arg::Expr(b)]) => {
                    Expr::Eq(Box::new(a.clone()), Box::new(b.clone()))
                }
                ("ne", [Arg::Expr(a), Arg::Expr(b)]) => {
                    Expr::Ne(Box::new(a.clone()), Box::new(b.clone()))
                }
                ("not", [Arg::Expr(a)]) => Expr::Not(Box::new(a.clone())),
                (f @ ("eq" | "ne" | "not"), _) => {
                    return Err(format!("wrong arguments to {f}"));
                }
                (f, _) => return Err(format!("unsupported function or keyword {f:?}")),
            };
            Ok((e, rest))
        }
        Some(_) => {
            let (arg, rest) = parse_operand(toks)?;
            match arg {
                Arg::Expr(e) => Ok((e, rest)),
                Arg::Dot => Err("`.` alone cannot be printed; use .name".into()),
            }
        }
        None => Err("empty action".into()),
    }
}

enum Arg {
    Dot,
    Expr(Expr),
}

fn parse_args(mut toks: &[Tok]) -> Result<(Vec<Arg>, &[Tok]), String> {
    let mut args = Vec::new();
    while let Some(t) = toks.first() {
        if matches!(t, Tok::Close) {
            break;
        }
        if let Tok::Ident(f) = t {
            return Err(format!("nested call to {f} needs parentheses"));
        }
        let (a, rest) = parse_operand(toks)?;
        args.push(a);
        toks = rest;
    }
    Ok((args, toks))
}

fn parse_operand(toks: &[Tok]) -> Result<(Arg, &[Tok]), String> {
    match toks.first() {
        Some(Tok::Dot) => Ok((Arg::Dot, &toks[1..])),
        Some(Tok::Field(f)) => Ok((Arg::Expr(Expr::Field(f.clone())), &toks[1..])),
        Some(Tok::Str(s)) => Ok((Arg::Expr(Expr::Str(s.clone())), &toks[1..])),
        Some(Tok::Open) => {
            let (e, rest) = parse_cmd(&toks[1..])?;
            match rest.first() {
                Some(Tok::Close) => Ok((Arg::Expr(e), &rest[1..])),
                _ => Err("unclosed '('".into()),
            }
        }
        Some(t) => Err(format!("unexpected {t:?}")),
        None => Err("missing operand".into()),
    }
}

/// Split into text and tokenised actions, applying trim markers.
fn split(src: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let mut inner = &rest[start + 2..];
        let trim_prev = inner.starts_with("- ") || inner.starts_with("-\t");
        if trim_prev {
            text = text.trim_end();
            inner = &inner[1..];
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_owned()));
        }
        let end = find_action_end(inner).ok_or("unclosed action: missing }}")?;
        let mut body = &inner[..end];
        rest = &inner[end + 2..];
        trim_next = body.ends_with(" -") || body.ends_with("\t-");
        if trim_next {
            body = &body[..body.len() - 1];
        }
        let body = body.trim();
        if body.starts_with("/*") {
            if !body.ends_with("*/") {
                return Err("unclosed comment".into());
            }
            pieces.push(Piece::Action(Vec::new()));
            continue;
        }
        pieces.push(Piece::Action(tokenize(body)?));
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        pieces.push(Piece::Text(text.to_owned()));
    }
    Ok(pieces)
}

/// Position of the `}}` closing an action, skipping string literals.
fn find_action_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        match (in_str, b[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') => in_str = false,
            (false, b'"') => in_str = true,
            (false, b'}') if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut chars = s.char_indices().peekable();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => toks.push(Tok::Open),
            ')' => toks.push(Tok::Close),
            '.' => {
                let mut name = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if !ident(c) {
                        break;
                    }
                    name.push(c);
                    chars.next();
                }
                if name.is_empty() {
                    toks.push(Tok::Dot);
                } else if chars.peek().is_some_and(|&(_, c)| c == '.') {
                    return Err(format!("nested field .{name}.… is not supported"));
                } else {
                    toks.push(Tok::Field(name));
                }
            }
            '"' => {
                let mut lit = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, 'n')) => lit.push('\n'),
                            Some((_, 't')) => lit.push('\t'),
                            Some((_, c @ ('\\' | '"'))) => lit.push(c),
                            _ => return Err("unsupported escape in string".into()),
                        },
                        c => lit.push(c),
                    }
                }
                if !closed {
                    return Err("unterminated string".into());
                }
                toks.push(Tok::Str(lit));
            }
            c if c.is_ascii_alphabetic() => {
                let mut name = c.to_string();
                while let Some(&(_, c)) = chars.peek() {
                    if !ident(c) {
                        break;
                    }
                    name.push(c);
                    chars.next();
                }
                toks.push(Tok::Ident(name));
            }
            c => return Err(format!("unexpected character {c:?} at {i}")),
        }
    }
    Ok(toks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn run(t: &str, d: &BTreeMap<String, String>) -> Result<String, EvalError> {
        Template::parse(t).expect(t).execute(d)
    }

    #[test]
    fn github_style_fields() {
        let d = data(&[("url", "https://github.com"), ("repository", "o/r")]);
        assert_eq!(
            run("{{ .url }}/{{ .repository }}", &d),
            Ok("https://github.com/o/r".into())
        );
        assert_eq!(run("{{.url}}", &d), Ok("https://github.com".into()));
        assert_eq!(
            run("{{ .url }}/{{ .nope }}", &d),
            Err(EvalError::Missing("nope".into()))
        );
    }

    #[test]
    fn gitlab_and_circleci_constructs() {
        let t = r#"refs/{{if eq .ref_type "branch"}}heads/{{ else }}tags/{{end}}{{ .ref }}"#;
        let mut d = data(&[("ref_type", "branch"), ("ref", "main")]);
        assert_eq!(run(t, &d), Ok("refs/heads/main".into()));
        d.insert("ref_type".into(), "tag".into());
        assert_eq!(run(t, &d), Ok("refs/tags/main".into()));
        let c = r#"{{.api}}/p/{{(index . "oidc.circleci.com/project-id")}}"#;
        let d = data(&[("api", "A"), ("oidc.circleci.com/project-id", "42")]);
        assert_eq!(run(c, &d), Ok("A/p/42".into()));
        assert_eq!(run("x {{- /* c */ -}} y", &d), Ok("xy".into()));
    }

    #[test]
    fn refuses_unsupported() {
        for bad in [
            "{{ .a",
            "{{ printf \"%s\" .a }}",
            "{{ if .a }}x",
            "{{ end }}",
            "{{ .a.b }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
