//! A minimal slab: connections stored by index, indexes reused, so an epoll token can be a
//! plain index. (The `slab` crate does the same with more care for generality; a dozen lines
//! keep the application free of a dependency for it.)

/// Values addressed by a stable `usize` key until removed.
#[derive(Debug)]
pub struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Slab<T> {
    /// An empty slab.
    pub fn new() -> Slab<T> {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// The key the next [`insert`](Slab::insert) will return.
    pub fn next_key(&self) -> usize {
        self.free.last().copied().unwrap_or(self.entries.len())
    }

    /// Stores `value` and returns its key.
    pub fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(key) => {
                debug_assert!(self.entries[key].is_none());
                self.entries[key] = Some(value);
                key
            }
            None => {
                self.entries.push(Some(value));
                self.entries.len() - 1
            }
        }
    }

    /// The value at `key`, if any.
    pub fn get(&self, key: usize) -> Option<&T> {
        self.entries.get(key).and_then(Option::as_ref)
    }

    /// The value at `key`, if any, mutably.
    pub fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.entries.get_mut(key).and_then(Option::as_mut)
    }

    /// Takes the value out and frees its key for reuse.
    pub fn remove(&mut self, key: usize) -> Option<T> {
        let value = self.entries.get_mut(key).and_then(Option::take);
        if value.is_some() {
            self.free.push(key);
            self.len -= 1;
        }
        value
    }

    /// Number of stored values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys of all stored values (a snapshot, so the caller may remove while walking it).
    pub fn keys(&self) -> Vec<usize> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_some())
            .map(|(k, _)| k)
            .collect()
    }
}

impl<T> Default for Slab<T> {
    fn default() -> Slab<T> {
        Slab::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn keys_are_reused_after_remove() {
        let mut slab = Slab::new();
        let a = slab.insert('a');
        let b = slab.insert('b');
        assert_eq!(slab.remove(a), Some('a'));
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.insert('c'), a);
        assert_eq!(slab.get_mut(b), Some(&mut 'b'));
        assert_eq!((slab.len(), slab.keys()), (2, vec![a, b]));
    }
}
