import { memo } from 'preact/compat';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api, messageOf, ok } from '../api';
import type { Item, ListQuery } from '../items';
import { onLink } from '../router';
import { Thumb } from '../components/Thumb';
import { startUpload, type UploadState } from '../uploads';
import { Alert } from '../components/Alert';

const TYPES = [
  ['', 'All'],
  ['image', 'Images'],
  ['video', 'Videos'],
  ['audio', 'Audio'],
  ['document', 'Documents'],
] as const;

const SORTS = [
  ['-createdAt', 'Newest'],
  ['createdAt', 'Oldest'],
  ['filename', 'Name'],
  ['-size', 'Size'],
  ['-takenAt', 'Taken'],
] as const;

interface Filters {
  q: string;
  type: string;
  sort: string;
}

function useLibrary(filters: Filters) {
  const [items, setItems] = useState<Item[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const generation = useRef(0);

  const load = useCallback(
    async (from: string | null) => {
      const mine = generation.current;
      setLoading(true);
      try {
        const query = { limit: 50, sort: filters.sort } as ListQuery;
        if (filters.q) query.q = filters.q;
        if (filters.type) query.type = filters.type as ListQuery['type'];
        if (from) query.cursor = from;
        const page = await ok(api.GET('/api/media/list', { params: { query } }));
        if (mine !== generation.current) return;
        setItems((old) => (from ? [...old, ...page.items] : page.items));
        setCursor(page.nextCursor ?? null);
        setError(null);
      } catch (e) {
        if (mine === generation.current) setError(messageOf(e));
      } finally {
        if (mine === generation.current) setLoading(false);
      }
    },
    [filters.q, filters.type, filters.sort],
  );

  const reload = useCallback(() => {
    generation.current++;
    void load(null);
  }, [load]);
  useEffect(reload, [reload]);
  const more = useCallback(() => {
    if (cursor && !loading) void load(cursor);
  }, [cursor, loading, load]);
  return { items, more, reload, loading, error, hasMore: cursor !== null };
}

/** One item of the grid; memoised, so that appending a page renders only the new items. */
const ItemCard = memo(function ItemCard({ item }: { item: Item }) {
  return (
    <li>
      <a href={`/app/items/${encodeURIComponent(item.id)}`} onClick={onLink} aria-label={item.filename}>
        <Thumb item={item} />
        <span class="name" aria-hidden="true">
          {item.filename}
        </span>
      </a>
    </li>
  );
});

export function Library() {
  const [filters, setFilters] = useState<Filters>({ q: '', type: '', sort: '-createdAt' });
  const [search, setSearch] = useState('');
  const { items, more, reload, loading, error, hasMore } = useLibrary(filters);
  const [uploads, setUploads] = useState<UploadState[]>([]);
  const sentinel = useRef<HTMLDivElement>(null);

  // The search waits for a pause in typing before asking the server.
  useEffect(() => {
    const timer = setTimeout(() => setFilters((f) => (f.q === search ? f : { ...f, q: search })), 250);
    return () => clearTimeout(timer);
  }, [search]);

  // Pages with the API's cursor as the person scrolls: the sentinel after the last item asks for more.
  useEffect(() => {
    const node = sentinel.current;
    if (!node) return;
    const observer = new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && more(), {
      rootMargin: '400px',
    });
    observer.observe(node);
    return () => observer.disconnect();
  }, [more]);

  const upload = (files: FileList | null) => {
    for (const file of Array.from(files ?? [])) {
      const state = startUpload(
        file,
        (s) => setUploads((list) => list.map((u) => (u.key === s.key ? { ...s } : u))),
        () => {
          setUploads((list) => list.filter((u) => u.key !== state.key));
          reload();
        },
      );
      setUploads((list) => [...list, { ...state }]);
    }
  };

  useEffect(() => {
    const over = (e: DragEvent) => e.preventDefault();
    const drop = (e: DragEvent) => {
      e.preventDefault();
      upload(e.dataTransfer?.files ?? null);
    };
    addEventListener('dragover', over);
    addEventListener('drop', drop);
    return () => {
      removeEventListener('dragover', over);
      removeEventListener('drop', drop);
    };
  });

  return (
    <section class="library">
      <h1>Library</h1>
      <div class="toolbar">
        <label class="upload">
          Upload files
          <input
            type="file"
            multiple
            onChange={(e) => {
              upload(e.currentTarget.files);
              e.currentTarget.value = '';
            }}
          />
        </label>
        <label>
          Search
          <input type="search" value={search} onInput={(e) => setSearch(e.currentTarget.value)} />
        </label>
        <label>
          Type
          <select
            value={filters.type}
            onChange={(e) => setFilters({ ...filters, type: e.currentTarget.value })}
          >
            {TYPES.map(([value, label]) => (
              <option value={value}>{label}</option>
            ))}
          </select>
        </label>
        <label>
          Sort
          <select
            value={filters.sort}
            onChange={(e) => setFilters({ ...filters, sort: e.currentTarget.value })}
          >
            {SORTS.map(([value, label]) => (
              <option value={value}>{label}</option>
            ))}
          </select>
        </label>
      </div>

      {uploads.length > 0 && (
        <ul class="uploads" aria-label="Uploads">
          {uploads.map((u) => (
            <li key={u.key}>
              {u.error ? (
                <p role="alert" class="error">
                  {u.name}: {u.error}
                </p>
              ) : (
                <>
                  <span>{u.name}</span>
                  <progress aria-label={u.name} max={u.total || 1} value={u.sent} />
                  <button type="button" onClick={u.cancel}>
                    Cancel upload of {u.name}
                  </button>
                </>
              )}
              {u.error && (
                <button type="button" onClick={() => setUploads((l) => l.filter((x) => x.key !== u.key))}>
                  Dismiss
                </button>
              )}
            </li>
          ))}
        </ul>
      )}

      <Alert message={error} />
      <ul class="grid" aria-label="Items">
        {items.map((item) => (
          <ItemCard key={item.id} item={item} />
        ))}
      </ul>
      {!loading && items.length === 0 && !error && <p>No files yet. Upload some.</p>}
      <div ref={sentinel} class="sentinel" aria-hidden="true" />
      {loading && <p class="loading">Loading…</p>}
      {!loading && hasMore && (
        <button type="button" onClick={more}>
          Load more
        </button>
      )}
    </section>
  );
}
