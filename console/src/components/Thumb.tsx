import { memo } from 'preact/compat';
import { useEffect, useRef, useState } from 'preact/hooks';
import { thumbHashToDataURL } from 'thumbhash';
import { dataUrl } from '../api';
import { kindOf, metadataOf, type Item } from '../items';

function placeholderUrl(hash: string | null | undefined): string | undefined {
  if (!hash) return undefined;
  try {
    return thumbHashToDataURL(Uint8Array.from(atob(hash), (c) => c.charCodeAt(0)));
  } catch {
    return undefined;
  }
}

/** How long a thumbnail may take before its ThumbHash is decoded and shown in its place. */
const PLACEHOLDER_AFTER_MS = 100;

const ICONS = { image: 'IMG', video: 'VIDEO', audio: 'AUDIO', document: 'DOC' } as const;

/**
 * One observer for every thumbnail (not one each): each element's callback runs once, the first
 * time it comes within 200 px of the viewport, at most PER_FRAME of them per animation frame (a
 * fast scroll brings a score of items near at once; each starts a fetch, a decode and a render).
 */
const nearViewport = new Map<Element, () => void>();
let observer: IntersectionObserver | undefined;
const PER_FRAME = 4;
const due: (() => void)[] = [];
let draining = false;

function drain(): void {
  for (const callback of due.splice(0, PER_FRAME)) callback();
  if (due.length > 0) requestAnimationFrame(drain);
  else draining = false;
}

function schedule(callback: () => void): void {
  due.push(callback);
  if (!draining) {
    draining = true;
    requestAnimationFrame(drain);
  }
}

function whenNear(node: Element, callback: () => void): () => void {
  observer ??= new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        const near = nearViewport.get(entry.target);
        nearViewport.delete(entry.target);
        observer?.unobserve(entry.target);
        if (near) schedule(near);
      }
    },
    { rootMargin: '200px' },
  );
  nearViewport.set(node, callback);
  observer.observe(node);
  return () => {
    nearViewport.delete(node);
    observer?.unobserve(node);
  };
}

/**
 * A thumbnail fetched with the access token once it scrolls near the viewport (an <img src> could
 * not send the token), showing the item's ThumbHash while it loads. The ThumbHash is decoded only
 * for a thumbnail that takes longer than PLACEHOLDER_AFTER_MS, never when the item is rendered:
 * scrolling brings a score of items near at once, and decoding (then painting) a placeholder for
 * each, moments before its thumbnail, made the longest frames of a fast scroll. Memoised:
 * appending a page to the library renders only the new items.
 */
export const Thumb = memo(function Thumb({ item }: { item: Item }) {
  const ref = useRef<HTMLDivElement>(null);
  const [src, setSrc] = useState<string | undefined>(undefined);
  const [placeholder, setPlaceholder] = useState<string | undefined>(undefined);
  const thumbnail = item.urls.thumbnail;
  const hash = metadataOf(item).placeholder;
  useEffect(() => {
    const node = ref.current;
    if (!thumbnail || !node) return;
    let cancelled = false;
    let slow: ReturnType<typeof setTimeout> | undefined;
    const stop = whenNear(node, () => {
      slow = setTimeout(() => setPlaceholder(placeholderUrl(hash)), PLACEHOLDER_AFTER_MS);
      dataUrl(`${thumbnail}?size=256`)
        .then((u) => {
          clearTimeout(slow);
          if (!cancelled) setSrc(u);
        })
        .catch(() => undefined);
    });
    return () => {
      cancelled = true;
      clearTimeout(slow);
      stop();
    };
  }, [thumbnail, hash]);

  return (
    <div class="thumb" ref={ref}>
      {thumbnail ? (
        <img alt={item.filename} src={src ?? placeholder} decoding="async" />
      ) : (
        <span class="icon" aria-hidden="true">
          {ICONS[kindOf(item)]}
        </span>
      )}
    </div>
  );
});
