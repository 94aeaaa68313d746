//! Metadata records where they never move, found through a map of slot numbers.
//!
//! Metadata outlives its secret (twice the ttl), so under load the store only gains records.
//! Held inline in a hash map, each record (~300 bytes) also sized every empty slot of the
//! table, and when the table grew, the old table and the twice-as-large new one were both
//! alive while griddle moved the entries across: about three times the records' own size,
//! over 100 MiB beyond the data in `just bench`. Here the records sit in fixed chunks that are
//! added as they fill and never reallocated, freed slots are reused, and the map holds a
//! 4-byte slot number per id: its growth moves 40-byte entries and leaves 40-byte holes.

/// Records per chunk: a chunk is allocated whole (about 1.2 MiB of metadata) when the
/// last one is full.
const CHUNK: usize = 4096;

/// A map from `K` to records `V` that stay where they were put.
pub(crate) struct Records<K, V> {
    index: griddle::HashMap<K, u32>,
    chunks: Vec<Vec<Option<V>>>,
    free: Vec<u32>,
}

impl<K, V> Default for Records<K, V> {
    fn default() -> Self {
        Self {
            index: griddle::HashMap::default(),
            chunks: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq, V> Records<K, V> {
    fn slot(&self, at: u32) -> Option<&V> {
        let at = at as usize;
        self.chunks.get(at / CHUNK)?.get(at % CHUNK)?.as_ref()
    }

    fn slot_mut(&mut self, at: u32) -> Option<&mut Option<V>> {
        let at = at as usize;
        self.chunks.get_mut(at / CHUNK)?.get_mut(at % CHUNK)
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.slot(*self.index.get(key)?)
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let at = *self.index.get(key)?;
        self.slot_mut(at)?.as_mut()
    }

    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    /// Puts `value` under `key` if `key` is new, and gives it back if not: one lookup of
    /// the index where a check and an insert are two, each a likely cache miss in a large
    /// table.
    pub(crate) fn insert_new(&mut self, key: K, value: V) -> Result<(), V> {
        let griddle::hash_map::Entry::Vacant(entry) = self.index.entry(key) else {
            return Err(value);
        };
        let at = match self.free.pop() {
            Some(at) => {
                let at_usize = at as usize;
                self.chunks[at_usize / CHUNK][at_usize % CHUNK] = Some(value);
                at
            }
            None => {
                if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                    self.chunks.push(Vec::with_capacity(CHUNK));
                }
                let last = self.chunks.len() - 1;
                let chunk = &mut self.chunks[last];
                chunk.push(Some(value));
                (last * CHUNK + chunk.len() - 1) as u32
            }
        };
        entry.insert(at);
        Ok(())
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.index.remove(key)?;
        let value = self.slot_mut(at)?.take();
        self.free.push(at);
        value
    }

    /// How many slots there are, used or free: [`Records::at`] takes `0..slots()`.
    pub(crate) fn slots(&self) -> u32 {
        self.chunks.iter().map(Vec::len).sum::<usize>() as u32
    }

    /// The record in slot `at`, if the slot is in use.
    pub(crate) fn at(&self, at: u32) -> Option<&V> {
        self.slot(at)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.chunks.iter().flatten().filter_map(Option::as_ref)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_found_refused_again_removed_and_their_slots_reused() {
        let mut r: Records<u64, String> = Records::default();
        for k in 0..(2 * CHUNK as u64 + 10) {
            assert!(r.insert_new(k, format!("v{k}")).is_ok());
        }
        assert_eq!(r.len(), 2 * CHUNK + 10);
        assert_eq!(r.chunks.len(), 3);
        assert_eq!(r.get(&5).map(String::as_str), Some("v5"));
        // A key already there is refused, its record left as it was.
        assert_eq!(r.insert_new(5, "five".into()), Err("five".to_owned()));
        assert_eq!(r.get(&5).map(String::as_str), Some("v5"));
        assert_eq!(r.len(), 2 * CHUNK + 10);
        r.get_mut(&7).unwrap().push('!');
        assert_eq!(r.get(&7).map(String::as_str), Some("v7!"));
        assert_eq!(r.remove(&7).as_deref(), Some("v7!"));
        assert_eq!(r.remove(&7), None);
        assert!(!r.contains_key(&7) && r.get(&7).is_none());
        // A new record takes the freed slot; no chunk is added.
        assert!(r.insert_new(u64::MAX, "new".into()).is_ok());
        assert_eq!(r.chunks.len(), 3);
        assert_eq!(r.get(&u64::MAX).map(String::as_str), Some("new"));
        assert_eq!(r.values().count(), r.len());
        assert!(r.values().any(|v| v == "new") && !r.values().any(|v| v == "v7!"));
    }
}
