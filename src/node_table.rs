//! A table of items found by their lowercase wire-format name key: the owned-name table's
//! storage ([`crate::snapshot`]).
//!
//! A table holds 100,000 names or more, so it is kept compact: the items sit in one vector in
//! insertion order, and a hash table of their indexes (four bytes a slot) finds them. Each
//! item carries its own key, so the key is stored once, not again as a map key. Keys hash
//! with foldhash: several times cheaper than SipHash on short keys, and seeded at random per
//! process, so clients cannot aim collisions.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// What a [`KeyedTable`] holds: something that knows its lowercase wire-format key.
pub trait Keyed {
    /// The item's full lowercase wire-format key.
    fn key(&self) -> &[u8];
}

/// Items found by key, where an item's key is its own [`Keyed::key`] with the first `skip`
/// bytes left out (2 for wildcards: `\x01*` + base, found by the base).
#[derive(Debug)]
pub struct KeyedTable<T> {
    items: Vec<T>,
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    skip: usize,
}

impl<T: Keyed> KeyedTable<T> {
    /// An empty table whose items are found by their key after its first `skip` bytes.
    pub fn new(skip: usize) -> Self {
        Self { items: Vec::new(), index: HashTable::new(), hasher: Default::default(), skip }
    }

    fn lookup_key(skip: usize, item: &T) -> &[u8] {
        item.key().get(skip..).unwrap_or_default()
    }

    /// An empty table with room for `capacity` items.
    pub fn with_capacity(skip: usize, capacity: usize) -> Self {
        let mut table = Self::new(skip);
        table.reserve(capacity);
        table
    }

    /// Makes room for `more` items, and no more: a build knows how many it adds.
    pub fn reserve(&mut self, more: usize) {
        self.items.reserve_exact(more);
        let (hasher, items, skip) = (&self.hasher, &self.items, self.skip);
        self.index.reserve(more, |&at| hasher.hash_one(Self::lookup_key(skip, &items[at as usize])));
    }

    fn position(&self, key: &[u8]) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        self.index.find(hash, |&at| Self::lookup_key(self.skip, &self.items[at as usize]) == key).map(|&at| at as usize)
    }

    /// The item found by `key`.
    pub fn get(&self, key: &[u8]) -> Option<&T> {
        self.position(key).map(|at| &self.items[at])
    }

    /// The item found by `key`, to change anything but its key.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut T> {
        self.position(key).map(|at| &mut self.items[at])
    }

    /// The item found by `key`; when there is none, the one `make` returns is put in first
    /// (it must have that key), unless `make` refuses.
    pub fn get_or_try_insert<E>(&mut self, key: &[u8], make: impl FnOnce() -> Result<T, E>) -> Result<&mut T, E> {
        let at = match self.position(key) {
            Some(at) => at,
            None => {
                self.insert(make()?);
                self.items.len() - 1
            }
        };
        Ok(&mut self.items[at])
    }

    /// Whether an item is found by `key`.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.position(key).is_some()
    }

    /// Puts `item` in, in the place of the item with the same key if there is one.
    pub fn insert(&mut self, item: T) {
        let key = Self::lookup_key(self.skip, &item);
        if let Some(at) = self.position(key) {
            self.items[at] = item;
            return;
        }
        let hash = self.hasher.hash_one(key);
        // More than four billion names would not fit in memory long before this.
        let at = u32::try_from(self.items.len()).unwrap_or(u32::MAX);
        self.items.push(item);
        let (hasher, items, skip) = (&self.hasher, &self.items, self.skip);
        self.index.insert_unique(hash, at, |&at| hasher.hash_one(Self::lookup_key(skip, &items[at as usize])));
    }

    /// Frees the room the build reserved but did not use.
    pub fn shrink_to_fit(&mut self) {
        self.items.shrink_to_fit();
        let (hasher, items, skip) = (&self.hasher, &self.items, self.skip);
        self.index.shrink_to_fit(|&at| hasher.hash_one(Self::lookup_key(skip, &items[at as usize])));
    }

    /// How many items it holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items, in the order they were first put in.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    /// The items, to change anything but their keys.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.items.iter_mut()
    }

    /// The key an item is found by.
    pub fn key_of<'a>(&self, item: &'a T) -> &'a [u8] {
        Self::lookup_key(self.skip, item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Item(Vec<u8>, u32);

    impl Keyed for Item {
        fn key(&self) -> &[u8] {
            &self.0
        }
    }

    #[test]
    fn finds_replaces_and_keeps_insertion_order() {
        let mut table = KeyedTable::new(0);
        for i in 0..1000u32 {
            table.insert(Item(i.to_be_bytes().to_vec(), i));
        }
        table.insert(Item(7u32.to_be_bytes().to_vec(), 70));
        let eight = table.get_or_try_insert(&8u32.to_be_bytes(), || Err::<Item, ()>(())).expect("there, so not made");
        eight.1 = 8;
        assert!(table.get_or_try_insert(&1000u32.to_be_bytes(), || Err(())).is_err(), "refused: not put in");
        assert_eq!(table.len(), 1000);
        table.get_or_try_insert(&1000u32.to_be_bytes(), || Ok::<_, ()>(Item(1000u32.to_be_bytes().to_vec(), 1000))).expect("made");
        table.shrink_to_fit();
        assert_eq!(table.len(), 1001);
        assert_eq!(table.get(&7u32.to_be_bytes()), Some(&Item(7u32.to_be_bytes().to_vec(), 70)));
        assert_eq!(table.get(&8u32.to_be_bytes()).map(|i| i.1), Some(8));
        assert_eq!(table.get(&5000u32.to_be_bytes()), None);
        assert_eq!(table.iter().map(|i| i.1).take(9).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5, 6, 70, 8]);
    }

    #[test]
    fn a_skipping_table_finds_items_by_the_rest_of_their_key() {
        let mut table = KeyedTable::new(2);
        table.insert(Item(b"\x01*\x07example\x00".to_vec(), 1));
        assert_eq!(table.get(b"\x07example\x00").map(|i| i.1), Some(1));
        assert!(!table.contains_key(b"\x01*\x07example\x00"));
        assert_eq!(table.key_of(table.iter().next().unwrap()), b"\x07example\x00");
    }
}
