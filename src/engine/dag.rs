//! The task graph: harvest(collection, day) → repartition(collection, month), with petgraph.

use crate::collection::Collection;
use crate::engine::checkpoint::sqlite::{TaskKind, TaskSpec};
use crate::period::{DayRange, Month};
use chrono::NaiveDate;
use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeMap, HashSet};

/// A DAG of tasks; an edge a → b means b needs a.
#[derive(Debug, Clone, Default)]
pub struct Dag {
    graph: DiGraph<TaskSpec, ()>,
}

impl Dag {
    /// Plans the work for `collections` over `range`: one harvest per (collection, day), and
    /// one repartition per (collection, month) whose every day is either in the range or
    /// already harvested (`done_keys` holds the keys of succeeded tasks), depending on all
    /// of that month's harvests.
    ///
    /// ```
    /// use hls_flow::{engine::dag::Dag, period::DayRange, Collection};
    /// let dag = Dag::plan(&[Collection::Hlsl30], DayRange::parse(&["202402"]).unwrap(), &Default::default());
    /// assert_eq!(dag.len(), 29 + 1);
    /// ```
    pub fn plan(collections: &[Collection], range: DayRange, done_keys: &HashSet<String>) -> Dag {
        let mut graph = DiGraph::new();
        let mut by_key: BTreeMap<String, NodeIndex> = BTreeMap::new();
        let mut add = |graph: &mut DiGraph<TaskSpec, ()>, spec: TaskSpec| -> NodeIndex {
            *by_key
                .entry(spec.key())
                .or_insert_with(|| graph.add_node(spec))
        };
        for &c in collections {
            for day in range.days() {
                add(&mut graph, TaskSpec::harvest(c, day));
            }
            for month in Month::spanning(range) {
                let month_days: Vec<NaiveDate> = month.days().collect();
                let complete = month_days.iter().all(|d| {
                    (range.start..=range.end).contains(d)
                        || done_keys.contains(&TaskSpec::harvest(c, *d).key())
                });
                if !complete {
                    continue;
                }
                let rep = add(&mut graph, TaskSpec::repartition(c, month));
                for d in month_days {
                    let h = add(&mut graph, TaskSpec::harvest(c, d));
                    graph.add_edge(h, rep, ());
                }
            }
        }
        Dag { graph }
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether there is no task.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// The tasks in an order where every task comes after those it needs, and the
    /// dependencies as (task, needs) positions in that list.
    pub fn ordered(&self) -> (Vec<TaskSpec>, Vec<(usize, usize)>) {
        // A DAG built by `plan` has no cycle; fall back to insertion order regardless.
        let order =
            toposort(&self.graph, None).unwrap_or_else(|_| self.graph.node_indices().collect());
        let pos: BTreeMap<NodeIndex, usize> =
            order.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let tasks = order.iter().map(|n| self.graph[*n].clone()).collect();
        let deps = self
            .graph
            .edge_indices()
            .filter_map(|e| self.graph.edge_endpoints(e))
            .filter_map(|(need, task)| Some((*pos.get(&task)?, *pos.get(&need)?)))
            .collect();
        (tasks, deps)
    }

    /// Tasks of one kind.
    pub fn count(&self, kind: TaskKind) -> usize {
        self.graph.node_weights().filter(|t| t.kind == kind).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_month_gets_a_repartition_after_all_its_days() {
        let dag = Dag::plan(
            &Collection::ALL,
            DayRange::parse(&["202405"]).unwrap(),
            &HashSet::new(),
        );
        assert_eq!(dag.count(TaskKind::Harvest), 62);
        assert_eq!(dag.count(TaskKind::Repartition), 2);
        let (tasks, deps) = dag.ordered();
        assert_eq!(deps.len(), 62);
        for (task, need) in deps {
            assert!(need < task, "dependencies come first");
            assert_eq!(tasks[task].kind, TaskKind::Repartition);
            assert_eq!(tasks[need].kind, TaskKind::Harvest);
            assert_eq!(tasks[task].collection, tasks[need].collection);
        }
    }

    #[test]
    fn partial_months_wait_for_their_other_days() {
        let range = DayRange::parse(&["20240510", "20240602"]).unwrap();
        let dag = Dag::plan(&[Collection::Hlss30], range, &HashSet::new());
        assert_eq!(dag.count(TaskKind::Harvest), 24);
        assert_eq!(dag.count(TaskKind::Repartition), 0);
        // With May 1–9 already harvested by an earlier run, May can be repartitioned.
        let done: HashSet<String> = (1..10)
            .map(|d| {
                TaskSpec::harvest(
                    Collection::Hlss30,
                    NaiveDate::from_ymd_opt(2024, 5, d).unwrap(),
                )
                .key()
            })
            .collect();
        let dag = Dag::plan(&[Collection::Hlss30], range, &done);
        assert_eq!(dag.count(TaskKind::Repartition), 1);
        assert_eq!(dag.count(TaskKind::Harvest), 24 + 9);
    }
}
