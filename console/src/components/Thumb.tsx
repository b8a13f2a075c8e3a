import { useEffect, useRef, useState } from 'preact/hooks';
import { thumbHashToDataURL } from 'thumbhash';
import { blobUrl } from '../api';
import { kindOf, metadataOf, type Item } from '../items';

function placeholderUrl(hash: string | null | undefined): string | undefined {
  if (!hash) return undefined;
  try {
    return thumbHashToDataURL(Uint8Array.from(atob(hash), (c) => c.charCodeAt(0)));
  } catch {
    return undefined;
  }
}

const ICONS = { image: 'IMG', video: 'VIDEO', audio: 'AUDIO', document: 'DOC' } as const;

/**
 * A thumbnail fetched with the access token once it scrolls near the viewport (an <img src> could
 * not send the token), showing the item's ThumbHash until it arrives.
 */
export function Thumb({ item }: { item: Item }) {
  const ref = useRef<HTMLDivElement>(null);
  const [src, setSrc] = useState<string | undefined>(undefined);
  const thumbnail = item.urls.thumbnail;
  useEffect(() => {
    const node = ref.current;
    if (!thumbnail || !node) return;
    let url: string | undefined;
    let cancelled = false;
    const observer = new IntersectionObserver(
      (entries) => {
        if (!entries.some((e) => e.isIntersecting)) return;
        observer.disconnect();
        blobUrl(`${thumbnail}?size=256`)
          .then((u) => {
            url = u;
            if (cancelled) URL.revokeObjectURL(u);
            else setSrc(u);
          })
          .catch(() => undefined);
      },
      { rootMargin: '200px' },
    );
    observer.observe(node);
    return () => {
      cancelled = true;
      observer.disconnect();
      if (url) URL.revokeObjectURL(url);
    };
  }, [thumbnail]);

  const placeholder = placeholderUrl(metadataOf(item).placeholder);
  return (
    <div class="thumb" ref={ref}>
      {thumbnail ? (
        <img alt={item.filename} src={src ?? placeholder} loading="lazy" decoding="async" />
      ) : (
        <span class="icon" aria-hidden="true">
          {ICONS[kindOf(item)]}
        </span>
      )}
    </div>
  );
}
