-- The words in the search index, so that a search for the beginning of a
-- word can look for the few whole words it begins.
--
-- Every search word is a prefix ("caf" finds "Café"), and FTS5 answers a
-- prefix longer than its prefix indexes (2 and 3 characters) by merging the
-- whole posting list of every word it begins before anything else: at a
-- million messages 20 to 75 ms per search, where the same search for whole
-- words takes under 1 ms (BENCHMARKS.md). The writer adds the words of each
-- indexing pass here, in the pass's transaction, as FTS5 itself tokenized
-- them; a search turns a longer ASCII prefix into the words it begins when
-- there are few (words are never removed: one no message holds any more
-- only matches nothing).

CREATE TABLE search_terms (term TEXT PRIMARY KEY) WITHOUT ROWID;

-- The words indexed so far, from the index itself.
CREATE VIRTUAL TABLE search_terms_migration USING fts5vocab(messages_fts, row);
INSERT INTO search_terms (term) SELECT term FROM search_terms_migration;
DROP TABLE search_terms_migration;
