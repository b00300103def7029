//! [`Dag`]: a validated dependency graph of named nodes, with cycle paths, ready sets and
//! fan-out/fan-in. Pure: no I/O, no clock.
//!
//! ```
//! use hybridgrid_scheduler::dag::{Dag, DagError};
//!
//! let dag = Dag::new([("scan", vec![]), ("lint", vec![]), ("notify", vec!["scan", "lint"])]).unwrap();
//! assert_eq!(dag.ready(&[]), vec!["lint", "scan"]);          // both roots at once (fan-out)
//! assert_eq!(dag.ready(&["scan"]), vec!["lint"]);            // notify waits for both (fan-in)
//! assert_eq!(dag.ready(&["scan", "lint"]), vec!["notify"]);
//!
//! let err = Dag::new([("A", vec!["C"]), ("B", vec!["A"]), ("C", vec!["B"])]).unwrap_err();
//! assert_eq!(err.to_string(), "dependency cycle: A → B → C → A");
//! ```

use std::collections::{BTreeMap, BTreeSet};

/// Why a graph is not a DAG.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    /// Two nodes share an id.
    #[error("duplicate node id {id:?}")]
    DuplicateNode {
        /// The id.
        id: String,
    },
    /// A node depends on an id that is not a node.
    #[error("node {node:?} depends on unknown node {dependency:?}")]
    UnknownDependency {
        /// The dependent node.
        node: String,
        /// The missing id.
        dependency: String,
    },
    /// The dependencies loop; `path` starts and ends with the same node, in dependency order
    /// (each node is followed by one that depends on it).
    #[error("dependency cycle: {}", path.join(" → "))]
    Cycle {
        /// `[A, B, C, A]`.
        path: Vec<String>,
    },
}

/// A validated DAG. Nodes are indexed in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dag {
    names: Vec<String>,
    index: BTreeMap<String, usize>,
    parents: Vec<Vec<usize>>,
    children: Vec<Vec<usize>>,
    topo: Vec<usize>,
}

impl Dag {
    /// Builds and checks the graph from `(id, dependencies)` pairs. A node listed twice in one
    /// dependency list counts once; a self-dependency is a cycle `A → A`.
    pub fn new<I, N, D, S>(nodes: I) -> Result<Self, DagError>
    where
        I: IntoIterator<Item = (N, D)>,
        N: Into<String>,
        D: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let raw: Vec<(String, Vec<String>)> = nodes
            .into_iter()
            .map(|(n, d)| (n.into(), d.into_iter().map(Into::into).collect()))
            .collect();
        let mut index = BTreeMap::new();
        let mut names = Vec::with_capacity(raw.len());
        for (i, (name, _)) in raw.iter().enumerate() {
            if index.insert(name.clone(), i).is_some() {
                return Err(DagError::DuplicateNode { id: name.clone() });
            }
            names.push(name.clone());
        }
        let mut parents = vec![Vec::new(); raw.len()];
        let mut children = vec![Vec::new(); raw.len()];
        for (i, (name, deps)) in raw.iter().enumerate() {
            let mut seen = BTreeSet::new();
            for d in deps {
                let Some(&p) = index.get(d) else {
                    return Err(DagError::UnknownDependency {
                        node: name.clone(),
                        dependency: d.clone(),
                    });
                };
                if seen.insert(p) {
                    parents[i].push(p);
                    children[p].push(i);
                }
            }
        }
        let topo = topo_order(&parents, &children).map_err(|cycle| DagError::Cycle {
            path: cycle.into_iter().map(|i| names[i].clone()).collect(),
        })?;
        Ok(Self {
            names,
            index,
            parents,
            children,
            topo,
        })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Node ids in the order given.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether `id` is a node.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Node ids in a dependency order (parents before children; ties in the order given).
    pub fn topological(&self) -> Vec<&str> {
        self.topo.iter().map(|&i| self.names[i].as_str()).collect()
    }

    /// The direct dependencies of `id` (empty for unknown ids).
    pub fn parents(&self, id: &str) -> Vec<&str> {
        self.rel(id, &self.parents)
    }

    /// The nodes that depend directly on `id`.
    pub fn children(&self, id: &str) -> Vec<&str> {
        self.rel(id, &self.children)
    }

    fn rel<'a>(&'a self, id: &str, table: &'a [Vec<usize>]) -> Vec<&'a str> {
        self.index
            .get(id)
            .map(|&i| table[i].iter().map(|&j| self.names[j].as_str()).collect())
            .unwrap_or_default()
    }

    /// Every node reachable from `id` through dependents (not `id` itself), sorted.
    pub fn descendants(&self, id: &str) -> Vec<&str> {
        self.reach(id, &self.children)
    }

    /// Every node `id` depends on, directly or not, sorted.
    pub fn ancestors(&self, id: &str) -> Vec<&str> {
        self.reach(id, &self.parents)
    }

    fn reach<'a>(&'a self, id: &str, table: &[Vec<usize>]) -> Vec<&'a str> {
        let Some(&start) = self.index.get(id) else {
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            for &j in &table[i] {
                if seen.insert(j) {
                    stack.push(j);
                }
            }
        }
        let mut out: Vec<&str> = seen.into_iter().map(|i| self.names[i].as_str()).collect();
        out.sort_unstable();
        out
    }

    /// Nodes not in `done` whose parents are all in `done`, sorted: what may start now.
    /// Unknown ids in `done` are ignored.
    pub fn ready(&self, done: &[&str]) -> Vec<&str> {
        let done: BTreeSet<usize> = done
            .iter()
            .filter_map(|d| self.index.get(*d).copied())
            .collect();
        let mut out: Vec<&str> = (0..self.names.len())
            .filter(|i| !done.contains(i) && self.parents[*i].iter().all(|p| done.contains(p)))
            .map(|i| self.names[i].as_str())
            .collect();
        out.sort_unstable();
        out
    }
}

/// Kahn's algorithm; on a cycle, walks parent links from a node left over to report the loop.
fn topo_order(parents: &[Vec<usize>], children: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = parents.len();
    let mut indegree: Vec<usize> = parents.iter().map(Vec::len).collect();
    let mut queue: std::collections::VecDeque<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = queue.pop_front() {
        order.push(i);
        for &c in &children[i] {
            indegree[c] -= 1;
            if indegree[c] == 0 {
                queue.push_back(c);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Every leftover node has a leftover parent: walking parents must revisit a node.
    let left: BTreeSet<usize> = (0..n).filter(|&i| indegree[i] > 0).collect();
    let mut node = left.iter().next().copied().unwrap_or(0);
    let mut pos: BTreeMap<usize, usize> = BTreeMap::new();
    let mut walk = Vec::new();
    loop {
        if let Some(&at) = pos.get(&node) {
            // walk[at..] is the loop, in parent order: reverse it to dependency order.
            let mut cycle: Vec<usize> = walk[at..].to_vec();
            cycle.reverse();
            // Start at the smallest index for a stable message.
            let min_pos = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, v)| **v)
                .map(|(k, _)| k)
                .unwrap_or(0);
            cycle.rotate_left(min_pos);
            let first = cycle[0];
            cycle.push(first);
            return Err(cycle);
        }
        pos.insert(node, walk.len());
        walk.push(node);
        node = parents[node]
            .iter()
            .copied()
            .find(|p| left.contains(p))
            .unwrap_or(node);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            Dag::new([("a", Vec::<&str>::new()), ("a", vec![])]).unwrap_err(),
            DagError::DuplicateNode { id: "a".into() }
        );
        assert_eq!(
            Dag::new([("a", vec!["x"])]).unwrap_err(),
            DagError::UnknownDependency {
                node: "a".into(),
                dependency: "x".into()
            }
        );
        assert_eq!(
            Dag::new([("a", vec!["a"])]).unwrap_err().to_string(),
            "dependency cycle: a → a"
        );
        // The guide's cycle, as edges A→B, B→C, C→A.
        let err = Dag::new([("A", vec!["C"]), ("B", vec!["A"]), ("C", vec!["B"])]).unwrap_err();
        assert_eq!(
            err,
            DagError::Cycle {
                path: vec!["A".into(), "B".into(), "C".into(), "A".into()]
            }
        );
        // A cycle behind an acyclic prefix is found and reported alone.
        let err = Dag::new([
            ("root", Vec::<&str>::new()),
            ("x", vec!["root", "z"]),
            ("y", vec!["x"]),
            ("z", vec!["y"]),
        ])
        .unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: x → y → z → x");
    }

    #[test]
    fn fan_out_fan_in() {
        let dag = Dag::new([
            ("src", Vec::<&str>::new()),
            ("a", vec!["src"]),
            ("b", vec!["src"]),
            ("c", vec!["src"]),
            ("join", vec!["a", "b", "c"]),
        ])
        .unwrap();
        assert_eq!(dag.ready(&[]), vec!["src"]);
        assert_eq!(dag.ready(&["src"]), vec!["a", "b", "c"]);
        assert_eq!(dag.ready(&["src", "a", "b"]), vec!["c"]);
        assert_eq!(dag.ready(&["src", "a", "b", "c"]), vec!["join"]);
        assert_eq!(dag.descendants("a"), vec!["join"]);
        assert_eq!(dag.ancestors("join"), vec!["a", "b", "c", "src"]);
        assert_eq!(dag.children("src"), vec!["a", "b", "c"]);
        assert_eq!(dag.topological()[0], "src");
    }

    /// Random DAGs: edges only from lower to higher index, so acyclic by construction.
    fn dag_strategy() -> impl Strategy<Value = Vec<(String, Vec<String>)>> {
        (1usize..30).prop_flat_map(|n| {
            prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..4), n)
                .prop_map(move |deps| {
                    deps.into_iter()
                        .enumerate()
                        .map(|(i, ds)| {
                            let parents = if i == 0 {
                                vec![]
                            } else {
                                ds.into_iter().map(|d| format!("n{}", d.index(i))).collect()
                            };
                            (format!("n{i}"), parents)
                        })
                        .collect()
                })
        })
    }

    proptest! {
        #[test]
        fn topological_order_respects_dependencies(nodes in dag_strategy()) {
            let dag = Dag::new(nodes.clone()).unwrap();
            let order = dag.topological();
            prop_assert_eq!(order.len(), nodes.len());
            let pos: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, n)| (*n, i)).collect();
            for (n, deps) in &nodes {
                for d in deps {
                    prop_assert!(pos[d.as_str()] < pos[n.as_str()]);
                }
            }
        }

        #[test]
        fn executing_ready_sets_runs_every_node_once_after_its_parents(nodes in dag_strategy()) {
            let dag = Dag::new(nodes.clone()).unwrap();
            let mut done: Vec<String> = Vec::new();
            loop {
                let refs: Vec<&str> = done.iter().map(String::as_str).collect();
                let ready: Vec<String> = dag.ready(&refs).into_iter().map(str::to_owned).collect();
                if ready.is_empty() { break; }
                for r in &ready {
                    for p in dag.parents(r) {
                        prop_assert!(done.iter().any(|d| d == p));
                    }
                }
                done.extend(ready);
            }
            let mut sorted = done.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), nodes.len());
            prop_assert_eq!(done.len(), nodes.len());
        }

        #[test]
        fn a_back_edge_is_reported_as_a_real_cycle(nodes in dag_strategy(), from in any::<prop::sample::Index>(), to in any::<prop::sample::Index>()) {
            let n = nodes.len();
            let (a, b) = (from.index(n), to.index(n));
            let (lo, hi) = (a.min(b), a.max(b));
            let dag = Dag::new(nodes.clone()).unwrap();
            let lo_name = format!("n{lo}");
            let hi_name = format!("n{hi}");
            // Make lo depend on hi: a cycle iff hi reaches lo... i.e. hi depends on lo transitively, or lo == hi.
            let creates_cycle = lo == hi || dag.ancestors(&hi_name).contains(&lo_name.as_str());
            let mut with_back = nodes.clone();
            with_back[lo].1.push(hi_name.clone());
            match Dag::new(with_back.clone()) {
                Ok(_) => prop_assert!(!creates_cycle),
                Err(DagError::Cycle { path }) => {
                    prop_assert!(creates_cycle);
                    prop_assert_eq!(path.first(), path.last());
                    // each step: the next node depends on the previous one
                    let deps: BTreeMap<&str, &Vec<String>> = with_back.iter().map(|(k, v)| (k.as_str(), v)).collect();
                    for w in path.windows(2) {
                        prop_assert!(deps[w[1].as_str()].contains(&w[0]), "{} does not depend on {}", w[1], w[0]);
                    }
                }
                Err(other) => prop_assert!(false, "unexpected {other}"),
            }
        }
    }
}
