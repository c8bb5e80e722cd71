//! daprd's operation matcher (`pkg/config` trie): operations are split at `/`; a segment
//! matches exactly, `/*` matches one last segment, `/**` matches everything below, and `*`
//! inside a segment globs. A listed operation also covers paths below it (`/op1` matches
//! `/op1/x`), as in daprd.

/// One operation's actions.
#[derive(Debug, Clone)]
pub struct OperationActions<A> {
    /// Action per HTTP verb as written (`GET`, `*`).
    pub verbs: Vec<(String, A)>,
    /// The action for callers without a verb (gRPC apps).
    pub action: A,
}

#[derive(Debug)]
struct Node<A> {
    segment: String,
    data: Option<OperationActions<A>>,
    children: Vec<Node<A>>,
}

impl<A> Node<A> {
    fn new(segment: String) -> Self {
        Self {
            segment,
            data: None,
            children: Vec::new(),
        }
    }
}

const ONE: &str = "/*";
const ANY: &str = "/**";

#[derive(Debug)]
pub struct OperationTrie<A> {
    root: Node<A>,
}

impl<A> Default for OperationTrie<A> {
    fn default() -> Self {
        Self {
            root: Node::new("/".to_owned()),
        }
    }
}

impl<A> OperationTrie<A> {
    /// Adds `operation` (starting with `/`). The first entry for an operation wins, as in daprd.
    pub fn insert(&mut self, operation: &str, data: OperationActions<A>) {
        let parts: Vec<&str> = operation.split('/').skip(1).collect();
        let last = parts.len().saturating_sub(1);
        let mut node = &mut self.root;
        let mut data = Some(data);
        for (i, part) in parts.iter().enumerate() {
            let segment = format!("/{part}");
            let pos = match node.children.iter().position(|c| c.segment == segment) {
                Some(pos) => pos,
                None => {
                    node.children.push(Node::new(segment));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[pos];
            if i == last && node.data.is_none() {
                node.data = data.take();
            }
        }
    }

    /// The actions of the operation covering `operation`, if any.
    pub fn search(&self, operation: &str) -> Option<&OperationActions<A>> {
        let parts: Vec<&str> = operation.split('/').skip(1).collect();
        let mut node = &self.root;
        let len = parts.len();
        let mut segment = String::new();
        for (i, part) in parts.iter().enumerate() {
            let is_end = i + 1 == len;
            segment.clear();
            segment.push('/');
            segment.push_str(part);
            node = find_child(node, &segment, is_end)?;
            if let Some(data) = &node.data {
                if !is_end && node.segment.ends_with(ONE) && !node.segment.ends_with(ANY) {
                    continue;
                }
                return Some(data);
            } else if is_end {
                return find_child(node, ONE, true).and_then(|n| n.data.as_ref());
            }
        }
        None
    }
}

fn find_child<'a, A>(node: &'a Node<A>, segment: &str, is_end: bool) -> Option<&'a Node<A>> {
    node.children.iter().find(|child| {
        if child.segment == segment {
            return true;
        }
        if child.segment == ONE {
            return is_end;
        }
        child.segment == ANY || glob(segment.as_bytes(), child.segment.as_bytes())
    })
}

/// `*` matches any run of bytes, including none.
fn glob(target: &[u8], pattern: &[u8]) -> bool {
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < target.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == target[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(ops: &[(&str, u8)]) -> OperationTrie<u8> {
        let mut t = OperationTrie::default();
        for (name, id) in ops {
            t.insert(
                name,
                OperationActions {
                    verbs: Vec::new(),
                    action: *id,
                },
            );
        }
        t
    }

    fn hit(t: &OperationTrie<u8>, op: &str) -> Option<u8> {
        t.search(op).map(|d| d.action)
    }

    #[test]
    fn exact_prefix_and_wildcards_match_like_daprd() {
        let t = trie(&[
            ("/op1", 1),
            ("/op2/*", 2),
            ("/op3/**", 3),
            ("/op4/a*c", 4),
            ("/op5/*/x", 5),
        ]);
        assert_eq!(hit(&t, "/op1"), Some(1));
        assert_eq!(hit(&t, "/op1/below"), Some(1));
        assert_eq!(hit(&t, "/op2/a"), Some(2));
        assert_eq!(hit(&t, "/op2/a/b"), None);
        assert_eq!(hit(&t, "/op2"), Some(2));
        assert_eq!(hit(&t, "/op3/a"), Some(3));
        assert_eq!(hit(&t, "/op3/a/b/c"), Some(3));
        assert_eq!(hit(&t, "/op4/abbc"), Some(4));
        assert_eq!(hit(&t, "/op4/abd"), None);
        assert_eq!(hit(&t, "/op6"), None);
        assert_eq!(hit(&t, "/"), None);
    }

    #[test]
    fn glob_matches_runs() {
        assert!(glob(b"/abc", b"/a*"));
        assert!(glob(b"/abc", b"/*c"));
        assert!(glob(b"/a", b"/a*"));
        assert!(!glob(b"/ab", b"/a*c"));
    }
}
