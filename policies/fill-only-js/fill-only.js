// stash2plex-fill-only-js: a stash2plex policy written in JavaScript
// (componentize-js), for stash2plex:policy@0.2.0.
//
// It never overwrites what Plex has: for a changed scene it finds the Plex
// item by the scene's file path and fills only the fields that are empty in
// Plex (summary, studio, originally available date; the title only if Plex
// has none). It retries transient failures with capped exponential backoff
// and full jitter, and keeps a small circuit breaker in its policy state:
// five failures in a row open it for a minute (doubling up to ten), during
// which jobs wait without using attempts.
//
// Build: `npm install && npm run build` (see build.mjs). Types follow jco's
// mapping of the WIT: records are objects with camelCase fields, variants
// are {tag, val}, enums are strings, s64/u64 are BigInt, option is a value
// or undefined, and a result-returning import throws its error.

import { nowMs, randomU64 } from 'stash2plex:policy/clock@0.1.0';
import { write } from 'stash2plex:policy/log@0.1.0';
import { send } from 'stash2plex:policy/plex@0.1.0';
import { findScene } from 'stash2plex:policy/stash@0.1.0';
import { claim, complete, counts, enqueue, release, retryAt, stateGet } from 'stash2plex:policy/queue@0.1.0';

const NAME = 'stash2plex-fill-only-js';
const BREAKER_KEY = 'breaker';
const LEASE_MS = 120000;
const PAGE = 200;
const MAX_ATTEMPTS = 8;

let sections = null; // [{ key, type, paths: [...] }]
const index = new Map(); // section key -> Map(file path -> ratingKey)
let fillTitle = true;

function log(level, message) {
  write(level, `${NAME}: ${message}`);
}

class PlexFailure extends Error {}

function request(method, path, query = [], headers = []) {
  let response;
  try {
    response = send({ method, path, query, headers, body: { tag: 'empty' }, timeoutMs: undefined });
  } catch (e) {
    const err = e && e.payload ? e.payload : e;
    throw new PlexFailure(`no answer from Plex (${err && err.tag ? err.tag : 'error'}: ${err && err.val ? err.val : err})`);
  }
  if (response.status === 401 || response.status === 403) {
    throw new PlexFailure(`Plex refused the token (HTTP ${response.status})`);
  }
  if (response.status >= 500 || response.status === 429) {
    throw new PlexFailure(`Plex answered HTTP ${response.status}`);
  }
  return response;
}

function json(response) {
  if (response.status !== 200) return null;
  try {
    return JSON.parse(new TextDecoder().decode(response.body));
  } catch (e) {
    throw new PlexFailure(`Plex answered something that is not JSON (${e})`);
  }
}

function loadSections() {
  if (sections) return sections;
  const body = json(request('get', '/library/sections'));
  const dirs = (body && body.MediaContainer && body.MediaContainer.Directory) || [];
  sections = dirs
    .filter((d) => d.type === 'movie' || d.type === 'show')
    .map((d) => ({ key: String(d.key), type: d.type, paths: (d.Location || []).map((l) => l.path) }));
  return sections;
}

function sectionFor(path) {
  let best = null;
  let bestLen = -1;
  for (const s of loadSections()) {
    for (const p of s.paths) {
      const prefix = p.endsWith('/') ? p : `${p}/`;
      if (path.startsWith(prefix) && prefix.length > bestLen) {
        best = s;
        bestLen = prefix.length;
      }
    }
  }
  return best;
}

function itemType(section) {
  return section.type === 'show' ? '4' : '1';
}

function ratingKeyOf(section, path) {
  let known = index.get(section.key);
  if (!known) {
    known = new Map();
    for (let start = 0; ; start += PAGE) {
      const body = json(
        request('get', `/library/sections/${section.key}/all`, [['type', itemType(section)]], [
          ['X-Plex-Container-Start', String(start)],
          ['X-Plex-Container-Size', String(PAGE)],
        ]),
      );
      const items = (body && body.MediaContainer && body.MediaContainer.Metadata) || [];
      for (const item of items) {
        for (const media of item.Media || []) {
          for (const part of media.Part || []) {
            if (part.file) known.set(part.file, String(item.ratingKey));
          }
        }
      }
      if (items.length < PAGE) break;
    }
    index.set(section.key, known);
  }
  return known.get(path);
}

function plexDate(date) {
  if (!date) return null;
  if (/^\d{4}-\d{2}-\d{2}$/.test(date)) return date;
  if (/^\d{4}-\d{2}$/.test(date)) return `${date}-01`;
  if (/^\d{4}$/.test(date)) return `${date}-01-01`;
  return null;
}

function empty(value) {
  return value === undefined || value === null || String(value).trim() === '';
}

function readBreaker() {
  try {
    const text = stateGet(BREAKER_KEY);
    if (text) return JSON.parse(text);
  } catch (e) {
    log('warn', `could not read the breaker state (${e})`);
  }
  return { failures: 0, openUntil: 0, trips: 0 };
}

function breakerWrite(b) {
  return [{ key: BREAKER_KEY, value: JSON.stringify(b) }];
}

function backoffMs(attempt) {
  const cap = Math.min(3600000, 5000 * 2 ** Math.min(attempt, 12));
  const jitter = Number(randomU64() % 1000000n) / 1000000;
  return Math.max(1000, Math.floor(cap * jitter));
}

/// Sync one claimed job; returns the summary.
function sync(job) {
  const scene = findScene(job.sceneId);
  if (!scene) {
    complete(job.id, job.lease, []);
    return `scene ${job.sceneId} is gone from Stash`;
  }
  const file = scene.files[0];
  if (!file) {
    complete(job.id, job.lease, []);
    return `scene ${scene.id} has no file`;
  }
  const section = sectionFor(file.path);
  const rk = section ? ratingKeyOf(section, file.path) : undefined;
  if (!rk) {
    const due = nowMs() + 3600000n;
    retryAt(job.id, job.lease, due, 'Plex has no item for this file yet', []);
    return `scene ${scene.id}: Plex has no item for its file yet; trying again in an hour`;
  }
  const body = json(request('get', `/library/metadata/${rk}`));
  const item = body && body.MediaContainer && body.MediaContainer.Metadata && body.MediaContainer.Metadata[0];
  if (!item) {
    index.delete(section.key);
    retryAt(job.id, job.lease, nowMs() + 60000n, `Plex item ${rk} vanished`, []);
    return `scene ${scene.id}: Plex item ${rk} vanished; matching again in a minute`;
  }
  const query = [['type', itemType(section)], ['id', rk]];
  const filled = [];
  const fill = (field, value) => {
    if (!empty(value) && empty(item[field])) {
      query.push([`${field}.value`, String(value)]);
      filled.push(field);
    }
  };
  if (fillTitle) fill('title', scene.title);
  fill('summary', scene.details);
  if (section.type === 'movie') fill('studio', scene.studio && scene.studio.name);
  fill('originallyAvailableAt', plexDate(scene.date));
  if (filled.length > 0) {
    request('put', `/library/sections/${section.key}/all`, query);
  }
  complete(job.id, job.lease, breakerWrite({ failures: 0, openUntil: 0, trips: 0 }));
  return filled.length > 0
    ? `scene ${scene.id} → item ${rk}: filled ${filled.join(', ')}`
    : `scene ${scene.id} → item ${rk}: nothing empty to fill`;
}

export const policy = {
  info() {
    return {
      name: NAME,
      version: '0.1.0',
      stateFormat: 'stash2plex-fill-only-js/1',
      settings: [
        {
          key: 'fill_title',
          kind: { tag: 'flag' },
          defaultValue: { tag: 'flag', val: true },
          description: 'Also fill the title when Plex has none (never overwritten)',
        },
      ],
      tasks: [],
    };
  },

  configure(settings) {
    for (const s of settings) {
      if (s.key === 'fill_title' && s.value.tag === 'flag') fillTitle = s.value.val;
    }
  },

  onEvent(event) {
    if (!event.trigger.startsWith('Scene.') || !event.objectId) {
      return { tag: 'ignored', val: `${NAME} does nothing for ${event.trigger}` };
    }
    enqueue(event.objectId, JSON.stringify({ v: 1, trigger: event.trigger }), nowMs());
    return { tag: 'enqueued', val: `scene ${event.objectId}` };
  },

  step() {
    const now = nowMs();
    const breaker = readBreaker();
    if (breaker.openUntil > Number(now)) {
      return { tag: 'wait-ms', val: Math.min(60000, breaker.openUntil - Number(now)) };
    }
    const job = claim(LEASE_MS);
    if (!job) {
      return { tag: 'idle', val: counts().nextDueMs };
    }
    try {
      return { tag: 'worked', val: sync(job) };
    } catch (e) {
      if (!(e instanceof PlexFailure)) throw e;
      const failures = breaker.failures + 1;
      const next = { failures, openUntil: breaker.openUntil, trips: breaker.trips };
      if (failures >= 5) {
        next.trips = breaker.trips + 1;
        next.openUntil = Number(now) + Math.min(600000, 60000 * 2 ** (next.trips - 1));
        next.failures = 0;
        log('warn', `${e.message}; pausing for ${(next.openUntil - Number(now)) / 1000} s`);
        release(job.id, job.lease, BigInt(next.openUntil), breakerWrite(next));
        return { tag: 'worked', val: `Plex keeps failing; paused` };
      }
      if (job.attempt >= MAX_ATTEMPTS) {
        // Keep it: a fill-only policy never gives a change up for a
        // transient failure; it waits an hour between tries from now on.
        retryAt(job.id, job.lease, now + 3600000n, e.message, breakerWrite(next));
      } else {
        retryAt(job.id, job.lease, now + BigInt(backoffMs(job.attempt)), e.message, breakerWrite(next));
      }
      return { tag: 'worked', val: `scene ${job.sceneId}: ${e.message}; retrying later` };
    }
  },

  runTask(name) {
    throw `${NAME} has no task ${name}`;
  },

  status() {
    const b = readBreaker();
    const open = b.openUntil > Number(nowMs());
    console.log(`${NAME}: status asked (breaker ${open ? 'open' : 'closed'})`);
    return {
      condition: open ? 'plex-unavailable' : 'healthy',
      summary: open ? 'Plex keeps failing; changes wait' : 'Filling empty Plex fields from Stash',
      details: [`failures in a row: ${b.failures}`],
      outages: [],
    };
  },
};
