//! Topic filters: matching, coverage (for ACLs) and the subscription tree.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

/// Whether `filter` matches the topic name `topic` (MQTT 5.0 §4.7). Filters starting with a
/// wildcard do not match topics starting with `$`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic that `requested` matches is also matched by `allowed`.
pub fn covers(allowed: &str, requested: &str) -> bool {
    let mut a = allowed.split('/');
    let mut r = requested.split('/');
    loop {
        match (a.next(), r.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(x)) if x != "#" => {}
            (Some(x), Some(y)) if x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A subscription's options, as granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubOptions {
    /// Granted maximum QoS.
    pub qos: u8,
    /// Do not deliver the client's own publishes (v5).
    #[serde(default)]
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded publishes (v5).
    #[serde(default)]
    pub retain_as_published: bool,
    /// Retain handling 0, 1 or 2 (v5).
    #[serde(default)]
    pub retain_handling: u8,
    /// Subscription identifier (v5).
    #[serde(default)]
    pub id: Option<u32>,
}

/// Members of one shared subscription group on one filter.
#[derive(Debug, Default)]
pub struct SharedGroup {
    members: Vec<(Arc<str>, SubOptions)>,
    next: AtomicUsize,
}

/// One shared group's candidates for a message: try them from `start`, round robin.
#[derive(Debug)]
pub struct SharedPick {
    /// Members in order.
    pub members: Vec<(Arc<str>, SubOptions)>,
    /// Where round robin starts this time.
    pub start: usize,
}

/// Subscriptions that match one topic.
#[derive(Debug, Default)]
pub struct Matches {
    /// Ordinary subscriptions: (client id, options), one entry per matching filter.
    pub direct: Vec<(Arc<str>, SubOptions)>,
    /// Shared groups, each delivering to one member.
    pub shared: Vec<SharedPick>,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    subs: HashMap<Arc<str>, SubOptions>,
    shared: HashMap<Arc<str>, SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subs.is_empty() && self.shared.is_empty()
    }
}

/// Every subscription of the node, by filter level.
#[derive(Debug, Default)]
pub struct SubTree {
    root: Node,
    count: usize,
}

impl SubTree {
    /// Adds or replaces `client`'s subscription to `filter` (in `group` for a shared one).
    /// Returns whether it already existed.
    pub fn insert(
        &mut self,
        filter: &str,
        group: Option<&str>,
        client: &Arc<str>,
        opts: SubOptions,
    ) -> bool {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        let existed = match group {
            None => node.subs.insert(client.clone(), opts).is_some(),
            Some(g) => {
                let members = &mut node.shared.entry(Arc::from(g)).or_default().members;
                match members.iter_mut().find(|(c, _)| c == client) {
                    Some(m) => {
                        m.1 = opts;
                        true
                    }
                    None => {
                        members.push((client.clone(), opts));
                        false
                    }
                }
            }
        };
        if !existed {
            self.count += 1;
        }
        existed
    }

    /// Removes `client`'s subscription to `filter`; returns whether it existed.
    pub fn remove(&mut self, filter: &str, group: Option<&str>, client: &str) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = remove_at(&mut self.root, &levels, group, client);
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The subscriptions matching the topic name `topic`.
    pub fn matches(&self, topic: &str) -> Matches {
        let mut out = Matches::default();
        let levels: Vec<&str> = topic.split('/').collect();
        collect(&self.root, &levels, 0, topic.starts_with('$'), &mut out);
        out
    }
}

fn remove_at(node: &mut Node, levels: &[&str], group: Option<&str>, client: &str) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        return match group {
            None => node.subs.remove(client).is_some(),
            Some(g) => {
                let Some(shared) = node.shared.get_mut(g) else {
                    return false;
                };
                let before = shared.members.len();
                shared.members.retain(|(c, _)| &**c != client);
                let removed = shared.members.len() != before;
                if shared.members.is_empty() {
                    node.shared.remove(g);
                }
                removed
            }
        };
    };
    let Some(child) = node.children.get_mut(*first) else {
        return false;
    };
    let removed = remove_at(child, rest, group, client);
    if child.is_empty() {
        node.children.remove(*first);
    }
    removed
}

fn take(node: &Node, out: &mut Matches) {
    out.direct
        .extend(node.subs.iter().map(|(c, o)| (c.clone(), *o)));
    for g in node.shared.values() {
        if g.members.is_empty() {
            continue;
        }
        let start = g.next.fetch_add(1, Ordering::Relaxed) % g.members.len();
        out.shared.push(SharedPick {
            members: g.members.clone(),
            start,
        });
    }
}

fn collect(node: &Node, levels: &[&str], depth: usize, dollar: bool, out: &mut Matches) {
    let wild_ok = !(depth == 0 && dollar);
    if wild_ok && let Some(all) = node.children.get("#") {
        take(all, out);
    }
    let Some((first, rest)) = levels.split_first() else {
        take(node, out);
        return;
    };
    if let Some(child) = node.children.get(*first) {
        collect(child, rest, depth + 1, dollar, out);
    }
    if wild_ok && let Some(child) = node.children.get("+") {
        collect(child, rest, depth + 1, dollar, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_follows_the_specification() {
        assert!(matches("sport/tennis/#", "sport/tennis"));
        assert!(matches("sport/tennis/#", "sport/tennis/player1/ranking"));
        assert!(matches("sport/+/player1", "sport/tennis/player1"));
        assert!(!matches("sport/+", "sport/tennis/player1"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("#", "a"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
    }

    #[test]
    fn coverage() {
        assert!(covers("sensors/#", "sensors/+/temp"));
        assert!(covers("sensors/#", "sensors"));
        assert!(covers("sensors/+/temp", "sensors/a/temp"));
        assert!(!covers("sensors/+/temp", "sensors/#"));
        assert!(!covers("sensors/+", "sensors/a/b"));
        assert!(covers("#", "anything/#"));
        assert!(!covers("a/b", "a/+"));
    }

    #[test]
    fn tree_matches_like_the_function() {
        let filters = [
            "#", "+", "a/#", "a/+", "a/b", "a/+/c", "+/b/#", "$SYS/#", "/+", "+/+",
        ];
        let topics = [
            "a", "a/b", "a/b/c", "a/x/c", "$SYS/up", "/x", "b/b", "x/b/y/z",
        ];
        let mut tree = SubTree::default();
        for (i, f) in filters.iter().enumerate() {
            let client: Arc<str> = Arc::from(format!("c{i}"));
            tree.insert(
                f,
                None,
                &client,
                SubOptions {
                    qos: 0,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: 0,
                    id: None,
                },
            );
        }
        for t in topics {
            let mut got: Vec<String> = tree
                .matches(t)
                .direct
                .into_iter()
                .map(|(c, _)| c.to_string())
                .collect();
            got.sort();
            let mut want: Vec<String> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| matches(f, t))
                .map(|(i, _)| format!("c{i}"))
                .collect();
            want.sort();
            assert_eq!(got, want, "topic {t}");
        }
        for (i, f) in filters.iter().enumerate() {
            assert!(tree.remove(f, None, &format!("c{i}")));
        }
        assert!(tree.is_empty());
        assert!(tree.root.is_empty());
    }

    #[test]
    fn shared_groups_round_robin() {
        let mut tree = SubTree::default();
        let opts = SubOptions {
            qos: 1,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
            id: None,
        };
        tree.insert("t/#", Some("g"), &Arc::from("a"), opts);
        tree.insert("t/#", Some("g"), &Arc::from("b"), opts);
        let m1 = tree.matches("t/1");
        let m2 = tree.matches("t/2");
        assert_eq!(m1.shared.len(), 1);
        assert_ne!(m1.shared[0].start, m2.shared[0].start);
        assert!(tree.remove("t/#", Some("g"), "a"));
        assert!(tree.remove("t/#", Some("g"), "b"));
        assert!(tree.is_empty());
    }
}
