//! A set of disjoint byte ranges: which parts of a file have had their checksums verified.

/// Sorted, disjoint, non-adjacent half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RangeSet(Vec<(u64, u64)>);

impl RangeSet {
    /// True if `[start, end)` lies inside one range.
    pub(crate) fn contains(&self, start: u64, end: u64) -> bool {
        let i = self.0.partition_point(|r| r.1 < end);
        self.0.get(i).is_some_and(|r| r.0 <= start && end <= r.1)
    }

    /// Adds `[start, end)`, merging with neighbours.
    pub(crate) fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let lo = self.0.partition_point(|r| r.1 < start);
        let hi = self.0.partition_point(|r| r.0 <= end);
        let (mut s, mut e) = (start, end);
        if lo < hi {
            s = s.min(self.0[lo].0);
            e = e.max(self.0[hi - 1].1);
        }
        self.0.splice(lo..hi, [(s, e)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_answers() {
        let mut s = RangeSet::default();
        s.insert(10, 20);
        s.insert(30, 40);
        assert!(s.contains(12, 18) && s.contains(10, 20) && !s.contains(15, 35));
        s.insert(20, 30);
        assert_eq!(s.0, vec![(10, 40)]);
        s.insert(0, 5);
        s.insert(50, 60);
        s.insert(3, 55);
        assert_eq!(s.0, vec![(0, 60)]);
    }
}
