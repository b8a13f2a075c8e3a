import { useEffect, useState } from 'preact/hooks';
import { api, blobUrl, messageOf, ok } from '../api';
import type { paths } from '../api-schema';
import { formatBytes, formatDate, formatDuration } from '../format';
import { kindOf, metadataOf, type Item } from '../items';
import { navigate } from '../router';
import { Dialog } from '../components/Dialog';
import { Alert } from '../components/Alert';

type Link =
  paths['/api/media/{id}/links']['get']['responses'][200]['content']['application/json']['items'][number];

const LIFETIMES = [
  [3600, '1 hour'],
  [86400, '1 day'],
  [604800, '7 days'],
] as const;

function Preview({ item }: { item: Item }) {
  const [src, setSrc] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const kind = kindOf(item);
  useEffect(() => {
    if (kind === 'document') return;
    let url: string | null = null;
    let cancelled = false;
    const from =
      kind === 'image' && item.urls.thumbnail ? `${item.urls.thumbnail}?size=1024` : item.urls.content;
    blobUrl(from)
      .then((u) => {
        url = u;
        if (cancelled) URL.revokeObjectURL(u);
        else setSrc(u);
      })
      .catch((e: unknown) => setError(messageOf(e)));
    return () => {
      cancelled = true;
      if (url) URL.revokeObjectURL(url);
    };
  }, [item.id, kind]);
  if (error) return <p role="alert">{error}</p>;
  if (kind === 'document') return <p class="prompt">This file has no preview. Use Download to open it.</p>;
  if (!src) return <p class="loading">Loading preview…</p>;
  if (kind === 'video') return <video controls src={src} aria-label={item.filename} />;
  if (kind === 'audio') return <audio controls src={src} aria-label={item.filename} />;
  return <img src={src} alt={item.filename} />;
}

function Details({ item }: { item: Item }) {
  const meta = metadataOf(item);
  const rows: [string, string][] = [
    ['Size', formatBytes(item.size)],
    ['Type', item.mimeType],
    ['Uploaded', formatDate(item.createdAt)],
    ['Changed', formatDate(item.updatedAt)],
  ];
  if (meta.takenAt) rows.push(['Taken', formatDate(meta.takenAt)]);
  const width = item.image?.width ?? meta.media?.width;
  const height = item.image?.height ?? meta.media?.height;
  if (width && height) rows.push(['Dimensions', `${width} × ${height}`]);
  if (meta.media?.durationMs) rows.push(['Duration', formatDuration(meta.media.durationMs)]);
  rows.push(['Tags', item.tags.length ? item.tags.join(', ') : '—']);
  const exif = meta.exif;
  if (exif) {
    const camera = [exif.make, exif.model].filter(Boolean).join(' ');
    if (camera) rows.push(['Camera', camera]);
    if (exif.lens) rows.push(['Lens', exif.lens]);
    const exposure = [
      exif.exposureTime ? `1/${Math.round(1 / exif.exposureTime)} s` : null,
      exif.fNumber ? `f/${exif.fNumber}` : null,
      exif.iso ? `ISO ${exif.iso}` : null,
      exif.focalLength ? `${exif.focalLength} mm` : null,
    ].filter(Boolean);
    if (exposure.length) rows.push(['Exposure', exposure.join(' · ')]);
    if (exif.gps)
      rows.push(['Location', `${exif.gps.latitude.toFixed(5)}, ${exif.gps.longitude.toFixed(5)}`]);
  }
  return (
    <dl class="details">
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}

function SharePanel({ item, onError }: { item: Item; onError: (message: string) => void }) {
  const [lifetime, setLifetime] = useState('3600');
  const [created, setCreated] = useState<string | null>(null);
  const [links, setLinks] = useState<Link[]>([]);
  const [copied, setCopied] = useState(false);
  const id = item.id;

  const refresh = async () => {
    setLinks((await ok(api.GET('/api/media/{id}/links', { params: { path: { id } } }))).items);
  };
  useEffect(() => void refresh().catch((e: unknown) => onError(messageOf(e))), [id]);

  const create = async () => {
    try {
      const link = await ok(
        api.POST('/api/media/{id}/links', {
          params: { path: { id } },
          body: { expiresIn: Number(lifetime) },
        }),
      );
      setCreated(new URL(link.url, location.origin).href);
      setCopied(false);
      await refresh();
    } catch (e) {
      onError(messageOf(e));
    }
  };

  const revoke = async (linkId: string) => {
    try {
      await ok(api.DELETE('/api/media/{id}/links/{linkId}', { params: { path: { id, linkId } } }));
      await refresh();
    } catch (e) {
      onError(messageOf(e));
    }
  };

  return (
    <section class="share" aria-label="Share">
      <h2>Share</h2>
      <label>
        Expires in
        <select value={lifetime} onChange={(e) => setLifetime(e.currentTarget.value)}>
          {LIFETIMES.map(([seconds, label]) => (
            <option value={String(seconds)}>{label}</option>
          ))}
        </select>
      </label>
      <button type="button" onClick={() => void create()}>
        Create link
      </button>
      {created && (
        <div class="link">
          <label>
            Share link
            <input readOnly value={created} onFocus={(e) => e.currentTarget.select()} />
          </label>
          <button
            type="button"
            onClick={() =>
              void navigator.clipboard.writeText(created).then(
                () => setCopied(true),
                () => onError('The link could not be copied: select it and copy it by hand.'),
              )
            }
          >
            Copy link
          </button>
          {copied && <span role="status">Copied</span>}
        </div>
      )}
      <h3>Live links</h3>
      {links.length === 0 ? (
        <p>No live links.</p>
      ) : (
        <ul class="links">
          {links.map((link) => (
            <li key={link.id}>
              <span>Expires {formatDate(link.expiresAt)}</span>
              <button type="button" onClick={() => void revoke(link.id)}>
                Revoke
              </button>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

export function ItemPage({ id }: { id: string }) {
  const [item, setItem] = useState<Item | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [sharing, setSharing] = useState(false);
  const [renaming, setRenaming] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const [tags, setTags] = useState('');
  const [name, setName] = useState('');
  const [saved, setSaved] = useState<string | null>(null);

  useEffect(() => {
    setItem(null);
    ok(api.GET('/api/media/{id}', { params: { path: { id } } }))
      .then((it) => {
        setItem(it);
        setTags(it.tags.join(', '));
      })
      .catch((e: unknown) => setError(messageOf(e)));
  }, [id]);

  const patch = async (
    body: { filename?: string; visibility?: 'private' | 'public'; tags?: string[] },
    what: string,
  ) => {
    try {
      const updated = await ok(api.PATCH('/api/media/{id}', { params: { path: { id } }, body }));
      setItem(updated);
      setTags(updated.tags.join(', '));
      setError(null);
      setSaved(what);
      return true;
    } catch (e) {
      setError(messageOf(e));
      return false;
    }
  };

  const download = async () => {
    if (!item) return;
    try {
      const url = await blobUrl(`${item.urls.content}?download=1`);
      const a = document.createElement('a');
      a.href = url;
      a.download = item.filename;
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (e) {
      setError(messageOf(e));
    }
  };

  const remove = async () => {
    try {
      await ok(api.DELETE('/api/media/{id}', { params: { path: { id } } }));
      navigate('/app/library');
    } catch (e) {
      setDeleting(false);
      setError(messageOf(e));
    }
  };

  if (!item) {
    return error ? <Alert message={error} /> : <p class="loading">Loading…</p>;
  }

  return (
    <article class="item">
      <h1>{item.filename}</h1>
      <Alert message={error} />
      {saved && <p role="status">{saved}</p>}
      <div class="preview">
        <Preview item={item} />
      </div>
      <Details item={item} />
      <div class="actions">
        <button type="button" onClick={() => void download()}>
          Download
        </button>
        <button type="button" aria-expanded={sharing} onClick={() => setSharing(!sharing)}>
          Share
        </button>
        <button
          type="button"
          onClick={() => {
            setName(item.filename);
            setRenaming(true);
          }}
        >
          Rename
        </button>
        <button type="button" onClick={() => setDeleting(true)}>
          Delete
        </button>
      </div>
      <div class="fields">
        <label>
          Visibility
          <select
            value={item.visibility}
            onChange={(e) =>
              void patch({ visibility: e.currentTarget.value as 'private' | 'public' }, 'Visibility saved.')
            }
          >
            <option value="private">Private</option>
            <option value="public">Public</option>
          </select>
        </label>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const list = tags
              .split(',')
              .map((t) => t.trim())
              .filter(Boolean);
            void patch({ tags: list }, 'Tags saved.');
          }}
        >
          <label>
            Tags
            <input value={tags} onInput={(e) => setTags(e.currentTarget.value)} />
          </label>
          <button type="submit">Save</button>
        </form>
      </div>
      {sharing && <SharePanel item={item} onError={setError} />}
      {renaming && (
        <Dialog title="Rename" onClose={() => setRenaming(false)}>
          <form
            method="dialog"
            onSubmit={(e) => {
              e.preventDefault();
              void patch({ filename: name }, 'Renamed.').then((done) => done && setRenaming(false));
            }}
          >
            <label>
              File name
              <input required value={name} onInput={(e) => setName(e.currentTarget.value)} />
            </label>
            <div class="buttons">
              <button type="submit">Rename</button>
              <button type="button" onClick={() => setRenaming(false)}>
                Cancel
              </button>
            </div>
          </form>
        </Dialog>
      )}
      {deleting && (
        <Dialog title={`Delete ${item.filename}?`} onClose={() => setDeleting(false)}>
          <p>The file and its links stop working.</p>
          <div class="buttons">
            <button type="button" onClick={() => void remove()}>
              Delete
            </button>
            <button type="button" onClick={() => setDeleting(false)}>
              Cancel
            </button>
          </div>
        </Dialog>
      )}
    </article>
  );
}
