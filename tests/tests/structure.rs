//! Structure rules of the library crates, checked on their source with
//! `syn` (no build of the crates' internals is needed):
//!
//! 1. **No module import loops, at any level of the module tree.** Every
//!    path a module names (`use` trees, paths in code, paths inside
//!    attributes and macro calls) that starts with `crate`, `self`, `super`
//!    or a child module's name is resolved to the deepest module it passes
//!    through. Then, for every module, its own items and each child's
//!    subtree are the nodes of a graph, with an edge wherever one of them
//!    names something in another; a cycle in any of these graphs is a loop.
//!    So `a -> b -> a` is a loop, `client::upload -> pool -> client::conn`
//!    is one too (between `client` and `pool`), and a child that uses an
//!    item its parent re-exports (`crate::Foo` instead of
//!    `crate::foo::Foo`) loops with the parent. Test code (`#[cfg(test)]`
//!    items) is not counted.
//! 2. **Small files**: at most [`MAX_LINES`] lines of non-test code per
//!    source file.
//! 3. **Sans-IO cores**: only the modules listed as drivers name `tokio`.
//!
//! Every crate of the workspace is listed in [`CRATES`]; the sans-IO rule
//! applies to the library crates whose cores are sans-IO by design.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Most lines of non-test code in one source file.
const MAX_LINES: usize = 600;

/// A crate checked: its directory, and the modules (paths below the crate
/// root, `::`-separated, a prefix covering its submodules) allowed to use
/// tokio. `None` means the crate is not held to the sans-IO rule.
struct CrateRules {
    dir: &'static str,
    tokio_allowed: Option<&'static [&'static str]>,
    /// Whether the line budget applies (see `membership` below).
    check_lines: bool,
}

const CRATES: &[CrateRules] = &[
    CrateRules {
        dir: "crypto",
        tokio_allowed: Some(&["session"]),
        check_lines: true,
    },
    CrateRules {
        dir: "storage",
        // The share server's drivers (server::driver, its openings in
        // server::listing, its listing datagrams in server::datagram) and
        // the scrub's driver (server::scrub).
        tokio_allowed: Some(&[
            "server::driver",
            "server::datagram",
            "server::listing",
            "server::scrub",
            "client",
            "testing",
        ]),
        check_lines: true,
    },
    // The SWIM core is sans-IO; only its driver uses tokio.
    CrateRules {
        dir: "membership",
        tokio_allowed: Some(&["driver"]),
        check_lines: true,
    },
    CrateRules {
        dir: "node",
        tokio_allowed: None,
        check_lines: true,
    },
    CrateRules {
        dir: "cli",
        tokio_allowed: None,
        check_lines: true,
    },
    CrateRules {
        dir: "perf",
        tokio_allowed: None,
        check_lines: true,
    },
    CrateRules {
        dir: "fuzz/entries",
        tokio_allowed: None,
        check_lines: true,
    },
];

/// One module: where it is, what it declares, what it names.
#[derive(Debug, Default)]
struct Module {
    file: PathBuf,
    children: BTreeSet<String>,
    /// Raw paths named by the module's own (non-test) code.
    refs: Vec<Vec<String>>,
    /// Whether its own code names tokio.
    uses_tokio: bool,
}

type ModPath = Vec<String>;

#[derive(Debug, Default)]
struct Crate {
    modules: BTreeMap<ModPath, Module>,
    /// Non-test lines per file.
    lines: Vec<(PathBuf, usize)>,
}

fn is_test_cfg(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        if !a.path().is_ident("cfg") {
            return false;
        }
        let Ok(list) = a.meta.require_list() else {
            return false;
        };
        let t = list.tokens.to_string().replace(' ', "");
        t == "test" || t.starts_with("all(test,")
    })
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item::*;
    match item {
        Const(i) => &i.attrs,
        Enum(i) => &i.attrs,
        ExternCrate(i) => &i.attrs,
        Fn(i) => &i.attrs,
        ForeignMod(i) => &i.attrs,
        Impl(i) => &i.attrs,
        Macro(i) => &i.attrs,
        Mod(i) => &i.attrs,
        Static(i) => &i.attrs,
        Struct(i) => &i.attrs,
        Trait(i) => &i.attrs,
        TraitAlias(i) => &i.attrs,
        Type(i) => &i.attrs,
        Union(i) => &i.attrs,
        Use(i) => &i.attrs,
        _ => &[],
    }
}

fn flatten_use(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten_use(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut v = prefix.clone();
            if n.ident != "self" {
                v.push(n.ident.to_string());
            }
            out.push(v);
        }
        syn::UseTree::Rename(r) => {
            let mut v = prefix.clone();
            if r.ident != "self" {
                v.push(r.ident.to_string());
            }
            out.push(v);
        }
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(t, prefix, out);
            }
        }
    }
}

/// `a :: b :: c` sequences in raw tokens (attributes, macro calls).
fn token_paths(ts: TokenStream, out: &mut Vec<Vec<String>>) {
    let tokens: Vec<TokenTree> = ts.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Group(g) => {
                token_paths(g.stream(), out);
                i += 1;
            }
            TokenTree::Ident(id) => {
                let mut path = vec![id.to_string()];
                let mut j = i + 1;
                loop {
                    let colons = matches!(
                        (tokens.get(j), tokens.get(j + 1)),
                        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                            if a.as_char() == ':' && b.as_char() == ':'
                    );
                    match (colons, tokens.get(j + 2)) {
                        (true, Some(TokenTree::Ident(next))) => {
                            path.push(next.to_string());
                            j += 3;
                        }
                        _ => break,
                    }
                }
                out.push(path);
                i = j;
            }
            TokenTree::Punct(_) | TokenTree::Literal(_) => i += 1,
        }
    }
}

/// Collects the paths named by one module's own items.
#[derive(Default)]
struct Refs {
    paths: Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for Refs {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.paths
            .push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, p);
    }
    fn visit_attribute(&mut self, a: &'ast syn::Attribute) {
        if let syn::Meta::List(l) = &a.meta {
            token_paths(l.tokens.clone(), &mut self.paths);
        }
        if let syn::Meta::NameValue(nv) = &a.meta {
            self.visit_expr(&nv.value);
        }
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.visit_path(&m.path);
        token_paths(m.tokens.clone(), &mut self.paths);
    }
    fn visit_item(&mut self, i: &'ast syn::Item) {
        // Nested items inside function bodies are part of this module,
        // unless they are test code.
        if !is_test_cfg(item_attrs(i)) {
            syn::visit::visit_item(self, i);
        }
    }
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {
        // `pub(crate)`, `pub(in path)`: who may see an item, not a use.
    }
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        flatten_use(&u.tree, &mut Vec::new(), &mut self.paths);
    }
}

fn span_lines(item: &syn::Item) -> usize {
    use syn::spanned::Spanned;
    let s = item.span();
    let attr_start = item_attrs(item)
        .first()
        .map(|a| a.span().start().line)
        .unwrap_or(s.start().line);
    s.end().line + 1 - attr_start.min(s.start().line)
}

impl Crate {
    /// The crate whose sources are in `src` (a library, or else a binary).
    fn load(src: &Path) -> Crate {
        let mut c = Crate::default();
        let lib = src.join("lib.rs");
        let top = if lib.exists() {
            lib
        } else {
            src.join("main.rs")
        };
        c.load_file(&top, vec![], src);
        c
    }

    /// Load the module in `file` at `path`; its children's files are under
    /// `dir`.
    fn load_file(&mut self, file: &Path, path: ModPath, dir: &Path) {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let total = text.lines().count();
        let test_lines: usize = ast
            .items
            .iter()
            .filter(|i| is_test_cfg(item_attrs(i)))
            .map(span_lines)
            .sum();
        self.lines
            .push((file.to_path_buf(), total.saturating_sub(test_lines)));
        self.load_items(&ast.items, &ast.attrs, path, file, dir);
    }

    fn load_items(
        &mut self,
        items: &[syn::Item],
        attrs: &[syn::Attribute],
        path: ModPath,
        file: &Path,
        dir: &Path,
    ) {
        let mut refs = Refs::default();
        for a in attrs {
            refs.visit_attribute(a);
        }
        let mut children = BTreeSet::new();
        for item in items {
            if is_test_cfg(item_attrs(item)) {
                continue;
            }
            if let syn::Item::Mod(m) = item {
                let name = m.ident.to_string();
                children.insert(name.clone());
                let mut child = path.clone();
                child.push(name.clone());
                for a in &m.attrs {
                    refs.visit_attribute(a);
                }
                match &m.content {
                    Some((_, inner)) => {
                        self.load_items(inner, &[], child, file, &dir.join(&name));
                    }
                    None => {
                        let flat = dir.join(format!("{name}.rs"));
                        let nested = dir.join(&name).join("mod.rs");
                        let f = if flat.exists() { flat } else { nested };
                        self.load_file(&f, child, &dir.join(&name));
                    }
                }
                continue;
            }
            refs.visit_item(item);
        }
        let uses_tokio = refs
            .paths
            .iter()
            .any(|p| p.first().is_some_and(|s| s == "tokio"));
        self.modules.insert(
            path,
            Module {
                file: file.to_path_buf(),
                children,
                refs: refs.paths,
                uses_tokio,
            },
        );
    }

    /// The module a path named in `from` leads to, if it is in this crate.
    fn resolve(&self, from: &ModPath, raw: &[String]) -> Option<ModPath> {
        let first = raw.first()?;
        let mut base: ModPath;
        let rest: &[String];
        match first.as_str() {
            "crate" => {
                base = vec![];
                rest = &raw[1..];
            }
            "self" => {
                base = from.clone();
                rest = &raw[1..];
            }
            "super" => {
                base = from.clone();
                let mut i = 0;
                while raw.get(i).is_some_and(|s| s == "super") {
                    base.pop();
                    i += 1;
                }
                rest = &raw[i..];
            }
            name if self.modules[from].children.contains(name) => {
                base = from.clone();
                rest = raw;
            }
            _ => return None,
        }
        for seg in rest {
            let mut next = base.clone();
            next.push(seg.clone());
            if self.modules.contains_key(&next) {
                base = next;
            } else {
                break;
            }
        }
        Some(base)
    }

    /// Module-to-module edges, each with the raw path that makes it.
    fn edges(&self) -> Vec<(ModPath, ModPath, String)> {
        let mut out = Vec::new();
        for (m, module) in &self.modules {
            // A one-segment path names something local or imported (and
            // the import is counted where it is made).
            for raw in module
                .refs
                .iter()
                .filter(|r| r.len() > 1 || r[0] == "super")
            {
                if let Some(t) = self.resolve(m, raw) {
                    if &t != m {
                        out.push((m.clone(), t, raw.join("::")));
                    }
                }
            }
        }
        out
    }

    /// Every loop, as a readable description, at every level of the tree.
    fn loops(&self) -> Vec<String> {
        let edges = self.edges();
        let mut found = Vec::new();
        for (parent, module) in &self.modules {
            // Node of the level a module falls in: the parent's own items
            // ("."), a child's subtree (its name), or outside.
            let node = |m: &ModPath| -> Option<String> {
                if m == parent {
                    return Some(".".into());
                }
                if m.len() > parent.len() && m[..parent.len()] == parent[..] {
                    let c = &m[parent.len()];
                    module.children.contains(c).then(|| c.clone())
                } else {
                    None
                }
            };
            let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
            for (a, b, why) in &edges {
                if let (Some(x), Some(y)) = (node(a), node(b)) {
                    if x != y {
                        graph
                            .entry(x)
                            .or_default()
                            .entry(y)
                            .or_insert_with(|| format!("{} names {why}", display(a)));
                    }
                }
            }
            for cycle in cycles(&graph) {
                let mut s = format!("in {}: ", display(parent));
                for w in cycle.windows(2) {
                    s.push_str(&format!("[{} -> {}: {}] ", w[0], w[1], graph[&w[0]][&w[1]]));
                }
                found.push(s);
            }
        }
        found
    }
}

fn display(m: &ModPath) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        format!("crate::{}", m.join("::"))
    }
}

/// One cycle (closed: first node repeated at the end) per strongly
/// connected component with more than one node.
fn cycles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = graph
        .keys()
        .chain(graph.values().flat_map(|m| m.keys()))
        .collect();
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for next in graph.get(&n).into_iter().flat_map(|m| m.keys()) {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let mut out = Vec::new();
    let mut reported = BTreeSet::new();
    for n in nodes {
        if reported.contains(n) || !reach(n).contains(n) {
            continue;
        }
        // A shortest way back to `n`, by breadth-first search.
        let mut prev: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([n.clone()]);
        'bfs: while let Some(x) = queue.pop_front() {
            for y in graph.get(&x).into_iter().flat_map(|m| m.keys()) {
                if y == n {
                    prev.insert(format!("{n}#end"), x.clone());
                    break 'bfs;
                }
                if !prev.contains_key(y) {
                    prev.insert(y.clone(), x.clone());
                    queue.push_back(y.clone());
                }
            }
        }
        let mut cycle = vec![n.clone()];
        let mut at = prev[&format!("{n}#end")].clone();
        while &at != n {
            cycle.push(at.clone());
            at = prev[&at].clone();
        }
        cycle.push(n.clone());
        cycle.reverse();
        for c in &cycle {
            reported.insert(c.clone());
        }
        out.push(cycle);
    }
    out
}

/// The workspace checked: this one, or the tree named by
/// `GRAPEVINE_SOURCE_ROOT` (to run the rules on another checkout, such as
/// an older commit's, and see what they find there).
fn root() -> PathBuf {
    std::env::var_os("GRAPEVINE_SOURCE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}

#[test]
fn no_module_import_loops() {
    let mut all = Vec::new();
    for c in CRATES {
        let krate = Crate::load(&root().join(c.dir).join("src"));
        all.extend(krate.loops().into_iter().map(|l| format!("{}: {l}", c.dir)));
    }
    assert!(all.is_empty(), "module import loops:\n{}", all.join("\n"));
}

#[test]
fn no_source_file_over_the_line_budget() {
    let mut over = Vec::new();
    for c in CRATES.iter().filter(|c| c.check_lines) {
        let krate = Crate::load(&root().join(c.dir).join("src"));
        for (file, lines) in &krate.lines {
            if *lines > MAX_LINES {
                over.push(format!(
                    "{}: {lines} lines of non-test code",
                    file.display()
                ));
            }
        }
    }
    assert!(
        over.is_empty(),
        "files over {MAX_LINES} lines:\n{}",
        over.join("\n")
    );
}

#[test]
fn only_drivers_use_tokio() {
    let mut bad = Vec::new();
    for c in CRATES {
        let Some(allowed) = c.tokio_allowed else {
            continue;
        };
        let krate = Crate::load(&root().join(c.dir).join("src"));
        for (m, module) in &krate.modules {
            let name = m.join("::");
            let ok = allowed
                .iter()
                .any(|a| name == *a || name.starts_with(&format!("{a}::")));
            if module.uses_tokio && !ok {
                bad.push(format!("{}: {}", c.dir, module.file.display()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "sans-IO modules naming tokio:\n{}",
        bad.join("\n")
    );
}

/// The checker itself finds what it is meant to find.
#[test]
fn the_checker_sees_loops_through_reexports_and_nested_modules() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("client")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "pub mod a; pub mod b; pub mod client; pub mod pool; pub use a::A;\n",
    )
    .unwrap();
    // a -> b -> a, written three ways.
    std::fs::write(src.join("a.rs"), "use crate::b::B; pub struct A;\n").unwrap();
    std::fs::write(
        src.join("b.rs"),
        "pub struct B(crate::a::A);\n#[cfg(test)] mod tests { use crate::pool::P; }\n",
    )
    .unwrap();
    // client::upload -> pool -> client::conn: a loop between client and pool.
    std::fs::write(src.join("client/mod.rs"), "pub mod conn; pub mod upload;\n").unwrap();
    std::fs::write(src.join("client/conn.rs"), "pub struct Conn;\n").unwrap();
    std::fs::write(
        src.join("client/upload.rs"),
        "fn f(_: &crate::pool::P) { tracing::info!(\"{:?}\", super::conn::Conn); }\n",
    )
    .unwrap();
    std::fs::write(
        src.join("pool.rs"),
        "use crate::client::{conn::Conn as C}; pub struct P(C);\n",
    )
    .unwrap();
    let krate = Crate::load(src);
    let loops = krate.loops();
    assert_eq!(loops.len(), 2, "{loops:#?}");
    assert!(loops
        .iter()
        .any(|l| l.contains("a -> b") || l.contains("b -> a")));
    assert!(loops
        .iter()
        .any(|l| l.contains("client") && l.contains("pool")));
    // A child naming its parent's re-export loops with the parent.
    std::fs::write(src.join("b.rs"), "pub struct B(crate::A);\n").unwrap();
    let loops = Crate::load(src).loops();
    assert!(
        loops
            .iter()
            .any(|l| l.contains(". -> b") || l.contains("b -> .")),
        "{loops:#?}"
    );
    // Test code is not counted, and nor are its lines.
    std::fs::write(
        src.join("a.rs"),
        "pub struct A;\n#[cfg(test)]\nmod tests {\n    use crate::b::B;\n}\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "pub struct B(crate::a::A);\n").unwrap();
    std::fs::write(src.join("pool.rs"), "pub struct P;\n").unwrap();
    let krate = Crate::load(src);
    assert!(krate.loops().is_empty(), "{:#?}", krate.loops());
    let a_lines = krate
        .lines
        .iter()
        .find(|(f, _)| f.ends_with("a.rs"))
        .unwrap()
        .1;
    assert_eq!(a_lines, 1);
}
