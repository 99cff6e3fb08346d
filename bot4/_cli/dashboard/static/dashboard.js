/*
 * bot4 desk dashboard: the browser front-end of `bot4 serve`.
 *
 * Loads the full desk state once from GET /api/state, then follows the same state object
 * pushed over the /ws WebSocket (reconnecting with a 1 s .. 10 s backoff). Messages are
 * coalesced and rendered at most once per animation frame, panel by panel. Charts and the
 * correlation heatmap are drawn on <canvas> by this file. Operator actions are sent to
 * POST /api/control/<action> with the bearer token typed in (or passed as #token=...).
 *
 * The page runs under a strict CSP: no inline code, no external resources. Every string
 * that comes from the server is put in the page with textContent only.
 */
'use strict';

(() => {
  // ------------------------------------------------------------------ small helpers

  const $ = (id) => document.getElementById(id);
  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  const obj = (v) => (isObj(v) ? v : {});
  const arr = (v) => (Array.isArray(v) ? v : []);
  const str = (v) => (v === null || v === undefined ? '' : String(v));
  const DASH = '—';

  const formats = new Map();
  function nf(digits) {
    let f = formats.get(digits);
    if (!f) {
      f = new Intl.NumberFormat('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
      formats.set(digits, f);
    }
    return f;
  }
  const qtyFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 8 });

  const fmtNum = (v, d = 2) => (isNum(v) ? nf(d).format(v) : DASH);
  const fmtInt = (v) => (isNum(v) ? nf(0).format(v) : DASH);
  const fmtQty = (v) => (isNum(v) ? qtyFormat.format(v) : DASH);
  const fmtPct = (v, d = 2) => (isNum(v) ? (v * 100).toFixed(d) + '%' : DASH);
  const fmtSigned = (v) => (isNum(v) ? (v > 0 ? '+' : '') + nf(2).format(v) : DASH);

  function fmtPrice(v) {
    if (!isNum(v)) return DASH;
    const a = Math.abs(v);
    return nf(a >= 1000 || a === 0 ? 2 : a >= 1 ? 4 : 6).format(v);
  }

  function fmtDuration(v) {
    if (!isNum(v)) return DASH;
    const s = Math.max(0, v);
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + String(Math.floor(s % 60)).padStart(2, '0') + 's';
    return Math.floor(s / 3600) + 'h' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + 'm';
  }

  const pad2 = (n) => String(n).padStart(2, '0');

  /** Local wall-clock time of a unix time in seconds: HH:MM:SS, optionally with .mmm. */
  function fmtClock(t, withMs) {
    if (!isNum(t)) return DASH;
    const d = new Date(t * 1000);
    const hms = pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
    return withMs ? hms + '.' + String(d.getMilliseconds()).padStart(3, '0') : hms;
  }

  /** Local time of a unix time, with the date when it is not today. */
  function fmtSince(t) {
    if (!isNum(t)) return DASH;
    const d = new Date(t * 1000);
    const now = new Date();
    if (d.toDateString() === now.toDateString()) return fmtClock(t, false);
    return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate()) + ' ' + fmtClock(t, false);
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setText(node, text) {
    const value = str(text);
    if (node && node.textContent !== value) node.textContent = value;
  }

  function setClass(node, cls) {
    if (node && node.className !== cls) node.className = cls;
  }

  /** A row of plain cells: specs are [text, className] pairs or bare texts. */
  function row(specs) {
    const tr = document.createElement('tr');
    for (const spec of specs) {
      const [text, cls] = Array.isArray(spec) ? spec : [spec, ''];
      tr.appendChild(el('td', cls, text));
    }
    return tr;
  }

  function emptyRow(cols, text) {
    const tr = document.createElement('tr');
    const td = el('td', 'empty', text);
    td.colSpan = cols;
    tr.appendChild(td);
    return tr;
  }

  function fillBody(table, rows) {
    const body = table.tBodies[0];
    if (body) body.replaceChildren(...rows);
  }

  function storeGet(key) {
    try { return window.sessionStorage.getItem(key) || ''; } catch (_) { return ''; }
  }

  function storeSet(key, value) {
    try { window.sessionStorage.setItem(key, value); } catch (_) { /* storage unavailable */ }
  }

  const TRADING_COLOUR = { ACTIVE: 's-green', REDUCING: 's-amber', HALTED: 's-red', FLATTENING: 's-red' };
  const BREAKER_COLOUR = {
    CLOSED: 's-green', HALF_OPEN: 's-amber', OPEN: 's-red', FORCED_OPEN: 's-red', DISABLED: 's-grey',
  };
  const COLOURS = {
    line: '#58a6ff', fill: 'rgba(88,166,255,0.10)', red: '#f85149', amber: '#d29922',
    text: '#7d8793', grid: '#222a34', value: '#d6dde6',
  };

  // ------------------------------------------------------------------ render scheduling

  let pending = null;
  let frame = 0;
  let lastState = null;

  function schedule(state) {
    pending = state;
    if (!frame) frame = window.requestAnimationFrame(flush);
  }

  function flush() {
    frame = 0;
    const state = pending;
    pending = null;
    if (!state) return;
    lastState = state;
    renderAll(state);
  }

  const PANELS = [
    ['header', (s) => renderHeader(s)],
    ['breakers', (s) => renderBreakers(arr(s.breakers))],
    ['timeline', (s) => renderTimeline(arr(s.timeline))],
    ['account', (s) => renderAccount(obj(s.account), obj(s.limits), arr(s.history))],
    ['positions', (s) => renderPositions(arr(s.positions), obj(s.account), obj(s.limits))],
    ['correlation', (s) => renderCorrelation(obj(s.correlation), obj(s.limits))],
    ['orders', (s) => renderOrders(obj(s.orders), obj(s.metrics), s.journal)],
    ['pnl', (s) => renderPnl(obj(s.pnl))],
    ['workers', (s) => renderWorkers(arr(s.workers))],
    ['feeds', (s) => renderFeeds(arr(s.feeds))],
    ['control', (s) => renderLimitCurrent(obj(s.limits))],
    ['footer', (s) => renderFooter(s)],
  ];

  /** Render every panel; one panel's bad data must not blank the others. */
  function renderAll(state) {
    const failed = [];
    for (const [name, render] of PANELS) {
      try {
        render(state);
      } catch (err) {
        failed.push(name + ': ' + (err && err.message ? err.message : String(err)));
      }
    }
    setText($('render-error'), failed.length ? 'render problem — ' + failed.join('; ') : '');
  }

  // ------------------------------------------------------------------ header & footer

  function renderHeader(s) {
    const segment = str(s.segment) || DASH;
    setText($('segment'), segment);

    const trading = obj(s.trading);
    const state = str(trading.state) || DASH;
    setText($('trading-state'), state);
    setClass($('trading-state'), 'tstate ' + (TRADING_COLOUR[state] || 's-grey'));
    setText($('trading-reason'), trading.reason ? '(' + str(trading.reason) + ')' : '');
    const title = state + ' · ' + segment + ' · bot4';
    if (document.title !== title) document.title = title;

    const kill = obj(trading.kill_switch);
    const killNode = $('kill-switch');
    if (kill.active) {
      let text = 'ON — ' + (str(kill.reason) || 'no reason given');
      if (isNum(kill.tripped_at)) text += ' (since ' + fmtSince(kill.tripped_at) + ')';
      setText(killNode, text);
      setClass(killNode, 'kill on');
    } else {
      setText(killNode, 'off');
      setClass(killNode, 'kill off');
    }

    const fuse = obj(s.fuse);
    const fuseState = str(fuse.state) || DASH;
    let fuseText = fuseState + ' · ' + fmtInt(fuse.open_breakers) + ' of ' + fmtInt(fuse.counted_breakers) + ' breakers open';
    if (isNum(fuse.trips) && fuse.trips > 0) fuseText += ' · ' + fmtInt(fuse.trips) + ' trips';
    setText($('fuse'), fuseText);
    setClass($('fuse'), 'fuse ' + (fuseState === 'TRIPPED' ? 'tripped' : fuseState === 'CLEAR' ? 'clear' : ''));
  }

  function renderFooter(s) {
    const ms = s.push_latency_ms;
    setText($('latency'), isNum(ms) ? 'server push ' + ms.toFixed(ms < 10 ? 2 : 0) + ' ms' : 'server push ' + DASH + ' ms');
    const at = isNum(s.time) ? s.time : Date.now() / 1000;
    setText($('updated'), 'updated ' + fmtClock(at, true));
  }

  function setConnection(live) {
    const node = $('connection');
    setText(node, live ? 'live' : 'disconnected');
    setClass(node, 'conn ' + (live ? 'live' : 'disconnected'));
    document.body.classList.toggle('offline', !live);
  }

  // ------------------------------------------------------------------ breakers & timeline

  const breakerRows = new Map(); // name -> { tr, cells }

  function makeBreakerRow(name) {
    const tr = document.createElement('tr');
    tr.dataset.breaker = name;
    const cells = {
      name: el('td', 'name', name),
      state: el('td', 'state'),
      calls: el('td', 'num'),
      fail: el('td', 'num'),
      trips: el('td', 'num'),
      rejections: el('td', 'num'),
      time: el('td', 'num'),
      openedBy: el('td', 'wrap'),
    };
    cells.name.title = name;
    const actions = el('td', 'actions');
    const force = el('button', 'br-force', 'force open');
    const reset = el('button', 'br-reset', 'reset');
    force.type = 'button';
    reset.type = 'button';
    actions.append(force, reset);
    tr.append(...Object.values(cells), actions);
    return { tr, cells };
  }

  function renderBreakers(list) {
    const body = $('breakers').tBodies[0];
    const seen = new Set();
    let index = 0;
    let open = 0;
    for (const item of list) {
      const b = obj(item);
      const name = str(b.name);
      if (!name || seen.has(name)) continue;
      seen.add(name);
      let entry = breakerRows.get(name);
      if (!entry) {
        entry = makeBreakerRow(name);
        breakerRows.set(name, entry);
      }
      const state = str(b.state) || DASH;
      const isOpen = state === 'OPEN' || state === 'FORCED_OPEN';
      if (isOpen) open += 1;
      const c = entry.cells;
      setText(c.state, state);
      setClass(c.state, 'state ' + (BREAKER_COLOUR[state] || 's-grey'));
      setText(c.calls, fmtInt(b.calls));
      setText(c.fail, fmtPct(b.failure_rate, 1));
      setText(c.trips, fmtInt(b.trips));
      setText(c.rejections, fmtInt(b.rejections));
      let time = fmtDuration(b.seconds_in_state);
      if (isNum(b.seconds_until_half_open)) time += ' / ' + fmtDuration(b.seconds_until_half_open);
      setText(c.time, time);
      setText(c.openedBy, b.opened_by === null || b.opened_by === undefined ? '' : str(b.opened_by));
      setClass(entry.tr, isOpen ? 'row-open' : '');
      if (body.children[index] !== entry.tr) body.insertBefore(entry.tr, body.children[index] || null);
      index += 1;
    }
    for (const [name, entry] of breakerRows) {
      if (!seen.has(name)) {
        entry.tr.remove();
        breakerRows.delete(name);
      }
    }
    setText($('breaker-count'), '(' + seen.size + (open ? ', ' + open + ' open' : '') + ')');
  }

  let timelineKey = '';

  function renderTimeline(list) {
    const newest = obj(list[list.length - 1]);
    const key = list.length + '|' + str(newest.time) + '|' + str(newest.breaker) + '|' + str(newest.to);
    if (key === timelineKey) return;
    timelineKey = key;
    const items = [];
    for (let i = list.length - 1; i >= 0 && items.length < 50; i -= 1) {
      const t = obj(list[i]);
      const from = str(t.from) || '?';
      const to = str(t.to) || '?';
      const li = document.createElement('li');
      li.append(
        el('span', 't', fmtClock(t.time, true)), '  ',
        el('span', 'b', str(t.breaker)), '  ',
        el('span', BREAKER_COLOUR[from] || 's-grey', from), ' → ',
        el('span', BREAKER_COLOUR[to] || 's-grey', to),
      );
      if (isNum(t.transitions) && t.transitions > 1) li.append(' (×' + t.transitions + ')');
      if (t.reason !== null && t.reason !== undefined && str(t.reason) !== '') {
        li.append('  ', el('span', 'r', str(t.reason)));
      }
      items.push(li);
    }
    if (!items.length) items.push(el('li', 'empty', 'no transitions yet'));
    $('timeline').replaceChildren(...items);
  }

  // ------------------------------------------------------------------ account & charts

  /** Class for a figure against its limit: warn from 80 % of the limit, bad at the limit. */
  function levelClass(value, limit) {
    if (!isNum(value) || !isNum(limit) || limit <= 0) return '';
    if (value >= limit) return 'bad';
    return value >= 0.8 * limit ? 'warn' : '';
  }

  function renderAccount(acc, limits, history) {
    setText($('acc-equity'), fmtNum(acc.equity));
    setText($('acc-peak'), fmtNum(acc.peak_equity));
    setText($('acc-unrealized'), fmtSigned(acc.unrealized_pnl));

    const withLimit = (text, limit, fmt) => (isNum(limit) ? text + ' / ' + fmt(limit) : text);
    setText($('acc-drawdown'), withLimit(fmtPct(acc.drawdown), limits.max_drawdown, fmtPct));
    setClass($('acc-drawdown'), levelClass(acc.drawdown, limits.max_drawdown));
    setText($('acc-daily-loss'), withLimit(fmtPct(acc.daily_loss), limits.daily_loss_limit, fmtPct));
    setClass($('acc-daily-loss'), levelClass(acc.daily_loss, limits.daily_loss_limit));

    let gross = fmtNum(acc.gross_exposure, 0);
    let multiple = null;
    if (isNum(acc.gross_exposure) && isNum(acc.equity) && acc.equity > 0) {
      multiple = acc.gross_exposure / acc.equity;
      gross += ' (' + multiple.toFixed(2) + 'x' + (isNum(limits.max_gross_exposure) ? ' of ' + limits.max_gross_exposure + 'x' : '') + ')';
    }
    setText($('acc-gross'), gross);
    setClass($('acc-gross'), levelClass(multiple, limits.max_gross_exposure));

    setText($('acc-open-orders'), withLimit(fmtInt(acc.open_orders), limits.max_open_orders, fmtInt));
    setClass($('acc-open-orders'), levelClass(acc.open_orders, limits.max_open_orders));
    setText($('acc-orders-rate'), withLimit(fmtInt(acc.orders_last_second), limits.max_orders_per_second, fmtInt));
    setClass($('acc-orders-rate'), levelClass(acc.orders_last_second, limits.max_orders_per_second));

    drawSeries($('chart-equity'), history, 'equity', { format: (v) => fmtNum(v, 0), minSpan: 1 });
    drawSeries($('chart-drawdown'), history, 'drawdown', {
      format: (v) => fmtPct(v), limit: limits.max_drawdown, zeroBased: true, minSpan: 0.01,
    });
    drawSeries($('chart-daily-loss'), history, 'daily_loss', {
      format: (v) => fmtPct(v), limit: limits.daily_loss_limit, zeroBased: true, minSpan: 0.01,
    });
  }

  /** Size a canvas's backing store to its CSS box (device pixels); null when it is not laid out. */
  function fitCanvas(canvas) {
    if (!canvas) return null;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!(w > 0 && h > 0)) return null;
    const dpr = window.devicePixelRatio || 1;
    const W = Math.round(w * dpr);
    const H = Math.round(h * dpr);
    if (canvas.width !== W) canvas.width = W;
    if (canvas.height !== H) canvas.height = H;
    const ctx = canvas.getContext('2d');
    if (!ctx) return null;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return { ctx, w, h };
  }

  /** A line chart of history[].key against time, with an optional dashed limit line. */
  function drawSeries(canvas, history, key, opts) {
    const fit = fitCanvas(canvas);
    if (!fit) return;
    const { ctx, w, h } = fit;
    const xs = [];
    const ys = [];
    for (const p of history) {
      if (p && isNum(p.time) && isNum(p[key])) {
        xs.push(p.time);
        ys.push(p[key]);
      }
    }
    ctx.font = '10px ui-monospace, monospace';
    ctx.textBaseline = 'alphabetic';
    if (!ys.length) {
      ctx.fillStyle = COLOURS.text;
      ctx.textAlign = 'center';
      ctx.fillText('no data yet', w / 2, h / 2 + 3);
      return;
    }
    const limit = isNum(opts.limit) ? opts.limit : null;
    let lo = Infinity;
    let hi = -Infinity;
    for (const y of ys) {
      if (y < lo) lo = y;
      if (y > hi) hi = y;
    }
    if (limit !== null) {
      lo = Math.min(lo, limit);
      hi = Math.max(hi, limit);
    }
    if (opts.zeroBased) lo = Math.min(lo, 0);
    if (!(hi - lo > 0)) {
      const span = Math.abs(hi) * 0.01 || opts.minSpan || 1;
      hi += span;
      if (!opts.zeroBased || lo !== 0) lo -= span;
    } else {
      const margin = (hi - lo) * 0.08;
      hi += margin;
      if (!(opts.zeroBased && lo === 0)) lo -= margin;
    }
    const left = 2;
    const right = w - 2;
    const top = 6;
    const bottom = h - 6;
    const t0 = xs[0];
    const tspan = xs[xs.length - 1] - t0;
    const X = (t) => (tspan > 0 ? left + ((t - t0) / tspan) * (right - left) : right);
    const Y = (v) => top + ((hi - v) / (hi - lo)) * (bottom - top);

    ctx.strokeStyle = COLOURS.grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (const f of [0.25, 0.5, 0.75]) {
      const y = Math.round(top + f * (bottom - top)) + 0.5;
      ctx.moveTo(left, y);
      ctx.lineTo(right, y);
    }
    ctx.stroke();

    if (ys.length === 1) {
      ctx.fillStyle = COLOURS.line;
      ctx.beginPath();
      ctx.arc(X(xs[0]) - 3, Y(ys[0]), 2.5, 0, Math.PI * 2);
      ctx.fill();
    } else {
      ctx.strokeStyle = COLOURS.line;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      for (let i = 0; i < ys.length; i += 1) {
        const gap = i === 0 || xs[i] - xs[i - 1] > 5; // a gap in the samples breaks the line
        if (gap) ctx.moveTo(X(xs[i]), Y(ys[i]));
        else ctx.lineTo(X(xs[i]), Y(ys[i]));
      }
      ctx.stroke();
    }

    ctx.fillStyle = COLOURS.text;
    if (limit !== null) {
      const y = Math.round(Y(limit)) + 0.5;
      ctx.strokeStyle = COLOURS.red;
      ctx.lineWidth = 1;
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(right, y);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = COLOURS.red;
      ctx.textAlign = 'right';
      ctx.fillText('limit ' + opts.format(limit), right - 2, y > top + 12 ? y - 3 : y + 11);
    }
    ctx.fillStyle = COLOURS.text;
    ctx.textAlign = 'left';
    ctx.fillText(opts.format(hi), left + 2, top + 8);
    ctx.fillText(opts.format(lo), left + 2, bottom - 1);
    ctx.fillStyle = COLOURS.value;
    ctx.textAlign = 'center';
    const span = tspan > 0 ? 'last ' + fmtDuration(tspan) + ': ' : '';
    ctx.fillText(span + opts.format(ys[ys.length - 1]), w / 2, top + 8);
  }

  // ------------------------------------------------------------------ exposure & P&L by symbol

  const pnlClass = (v) => 'num' + (isNum(v) && v > 0 ? ' pos' : isNum(v) && v < 0 ? ' neg' : '');

  function renderPositions(positions, acc, limits) {
    const equity = isNum(acc.equity) && acc.equity > 0 ? acc.equity : null;
    const perSymbol = equity !== null && isNum(limits.max_symbol_exposure) ? limits.max_symbol_exposure * equity : null;
    let scale = perSymbol || 0;
    for (const p of positions) {
      const e = obj(p).exposure;
      if (isNum(e) && Math.abs(e) > scale) scale = Math.abs(e);
    }
    const rows = [];
    for (const item of positions) {
      const p = obj(item);
      const e = isNum(p.exposure) ? p.exposure : null;
      const bar = el('div', 'bar');
      const width = e !== null && scale > 0 ? Math.min(100, (Math.abs(e) / scale) * 100) : 0;
      bar.style.width = width.toFixed(2) + '%';
      if (e !== null && e < 0) bar.classList.add('short');
      if (e !== null && perSymbol !== null && Math.abs(e) > perSymbol) bar.classList.add('over');
      const track = el('div', 'bartrack');
      track.appendChild(bar);
      const wrap = el('div', 'barwrap');
      wrap.append(track, el('span', 'barval', fmtNum(e, 0)));
      const barCell = el('td', 'barcell');
      barCell.appendChild(wrap);
      const tr = row([[str(p.symbol), 'name']]);
      tr.appendChild(barCell);
      tr.append(
        el('td', 'num', fmtQty(p.quantity)),
        el('td', 'num', fmtPrice(p.average_price)),
        el('td', 'num', fmtPrice(p.mark)),
        el('td', pnlClass(p.realized_pnl), fmtSigned(p.realized_pnl)),
        el('td', pnlClass(p.unrealized_pnl), fmtSigned(p.unrealized_pnl)),
      );
      rows.push(tr);
    }
    fillBody($('positions'), rows);
    $('positions').classList.toggle('hidden', rows.length === 0);
    $('positions-empty').classList.toggle('hidden', rows.length !== 0);
    setText($('exposure-note'), isNum(limits.max_symbol_exposure)
      ? '(per-symbol max ' + limits.max_symbol_exposure + 'x equity' + (perSymbol !== null ? ' = ' + fmtNum(perSymbol, 0) : '') + ')'
      : '');
  }

  // ------------------------------------------------------------------ correlation heatmap

  let corrGeom = null; // what the heatmap shows, for the hover read-out
  const CORR_MAX_PX = 760;

  function corrColour(v) {
    if (!isNum(v)) return '#5a5f66';
    const t = Math.min(1, Math.abs(v));
    const base = [30, 36, 44];
    const end = v < 0 ? [40, 110, 235] : [225, 55, 50];
    const c = base.map((b, i) => Math.round(b + (end[i] - b) * t));
    return 'rgb(' + c[0] + ',' + c[1] + ',' + c[2] + ')';
  }

  function renderCorrelation(corr, limits) {
    const canvas = $('correlation');
    const symbols = arr(corr.symbols).map(str);
    const matrix = arr(corr.matrix);
    const n = symbols.length;
    const limit = isNum(limits.max_correlation) ? limits.max_correlation : null;
    setText($('corr-note'), limit !== null
      ? '(max_correlation ' + limit + ': pairs above it outlined; blue −1 … red +1, grey no data)'
      : '(no max_correlation limit; blue −1 … red +1, grey no data)');
    canvas.classList.toggle('hidden', n === 0);
    if (n === 0) {
      corrGeom = null;
      setText($('corr-hover'), 'no symbols');
      return;
    }
    const avail = canvas.parentElement ? canvas.parentElement.clientWidth : 0;
    if (!(avail > 0)) return;
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    ctx.font = '10px ui-monospace, monospace';
    let labelW = 0;
    for (const s of symbols) labelW = Math.max(labelW, ctx.measureText(s).width);
    labelW = Math.min(110, Math.ceil(labelW) + 6);
    // fit the width of the card, and at most CORR_MAX_PX tall (no vertical scrollbar that
    // would narrow the card and resize the map again on the next frame)
    const room = Math.min(avail - 4, CORR_MAX_PX);
    let cell = Math.floor((room - labelW) / n);
    if (cell < 8) {
      labelW = 0; // too small to label: the hover read-out names the pair
      cell = Math.floor(room / n);
    }
    cell = Math.max(3, Math.min(28, cell));
    const fontPx = Math.max(7, Math.min(10, cell));
    const size = labelW + n * cell + 1;
    const dpr = window.devicePixelRatio || 1;
    canvas.style.width = size + 'px';
    canvas.style.height = size + 'px';
    if (canvas.width !== Math.round(size * dpr)) canvas.width = Math.round(size * dpr);
    if (canvas.height !== Math.round(size * dpr)) canvas.height = Math.round(size * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, size, size);
    ctx.font = fontPx + 'px ui-monospace, monospace';

    const outlined = [];
    for (let i = 0; i < n; i += 1) {
      const line = arr(matrix[i]);
      for (let j = 0; j < n; j += 1) {
        const v = line[j];
        ctx.fillStyle = corrColour(v);
        ctx.fillRect(labelW + j * cell, labelW + i * cell, cell - 1, cell - 1);
        if (limit !== null && i !== j && isNum(v) && v > limit) outlined.push([i, j]);
      }
    }
    if (outlined.length) {
      ctx.strokeStyle = '#ffd84a';
      ctx.lineWidth = cell >= 8 ? 1.5 : 1;
      for (const [i, j] of outlined) {
        ctx.strokeRect(labelW + j * cell + 0.75, labelW + i * cell + 0.75, Math.max(1, cell - 2.5), Math.max(1, cell - 2.5));
      }
    }
    if (labelW > 0) {
      ctx.fillStyle = COLOURS.text;
      ctx.textBaseline = 'middle';
      ctx.textAlign = 'right';
      for (let i = 0; i < n; i += 1) ctx.fillText(symbols[i], labelW - 4, labelW + i * cell + cell / 2, labelW - 4);
      ctx.save();
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = 'left';
      for (let j = 0; j < n; j += 1) ctx.fillText(symbols[j], -labelW + 4, labelW + j * cell + cell / 2, labelW - 4);
      ctx.restore();
      ctx.textBaseline = 'alphabetic';
    }
    corrGeom = { symbols, matrix, labelW, cell, n };
  }

  function onCorrelationHover(event) {
    const g = corrGeom;
    if (!g) return;
    const rect = event.currentTarget.getBoundingClientRect();
    const j = Math.floor((event.clientX - rect.left - g.labelW) / g.cell);
    const i = Math.floor((event.clientY - rect.top - g.labelW) / g.cell);
    if (i < 0 || j < 0 || i >= g.n || j >= g.n) {
      setText($('corr-hover'), '\u00a0');
      return;
    }
    const v = arr(g.matrix[i])[j];
    setText($('corr-hover'), g.symbols[i] + ' / ' + g.symbols[j] + ': ' + (isNum(v) ? v.toFixed(3) : 'no data'));
  }

  // ------------------------------------------------------------------ orders, workers, feeds

  function countRows(counts, byCount) {
    const entries = Object.entries(obj(counts)).filter(([, v]) => isNum(v));
    entries.sort(byCount ? (a, b) => b[1] - a[1] || a[0].localeCompare(b[0]) : (a, b) => a[0].localeCompare(b[0]));
    return entries.map(([k, v]) => row([[k, 'name'], [fmtInt(v), 'num']]));
  }

  function renderOrders(orders, metrics, journal) {
    setText($('orders-open'), fmtInt(orders.open));
    setText($('orders-sent'), fmtInt(metrics.orders_sent));
    setText($('orders-source'), orders.source === 'journal' ? '(from the journal)' : orders.source ? '(from the ledger)' : '');
    const states = countRows(orders.by_state, false);
    fillBody($('orders'), states.length ? states : [emptyRow(2, 'no orders by state')]);
    const rejections = countRows(metrics.rejections, true);
    fillBody($('rejections'), rejections.length ? rejections : [emptyRow(2, 'no rejections')]);
    const node = $('journal');
    if (isObj(journal)) {
      const problem = str(journal.problem);
      setText(node, problem ? 'journal problem: ' + problem : 'journal: ' + str(journal.path));
      setClass(node, 'muted journal' + (problem ? ' problem' : ''));
    } else {
      setText(node, 'no journal');
      setClass(node, 'muted journal');
    }
  }

  /** Realized P&L, fees, fills and notional by venue, then by strategy (every process's). */
  function renderPnl(pnl) {
    const rows = [];
    for (const [label, key] of [['venue', 'by_venue'], ['strategy', 'by_strategy']]) {
      const entries = Object.entries(obj(pnl[key])).filter(([, v]) => isObj(v));
      entries.sort((a, b) => a[0].localeCompare(b[0]));
      for (const [name, f] of entries) {
        const net = isNum(f.realized) && isNum(f.fees) ? f.realized - f.fees : null;
        rows.push(
          row([
            [label, 'muted'],
            [name, 'name'],
            [fmtSigned(f.realized), pnlClass(f.realized)],
            [fmtNum(f.fees), 'num'],
            [fmtSigned(net), pnlClass(net)],
            [fmtInt(f.fills), 'num'],
            [fmtNum(f.notional), 'num'],
          ]),
        );
      }
    }
    fillBody($('pnl-attribution'), rows.length ? rows : [emptyRow(7, 'no fills yet')]);
  }

  function renderWorkers(workers) {
    const rows = workers.map((item) => {
      const w = obj(item);
      const stale = isNum(w.heartbeat_age) && w.heartbeat_age > 2;
      const tr = row([
        [fmtInt(w.slot), 'num'],
        [fmtInt(w.pid), 'num'],
        w.alive ? 'yes' : 'no',
        [isNum(w.heartbeat_age) ? w.heartbeat_age.toFixed(2) : DASH, 'num' + (stale ? ' stale' : '')],
        [arr(w.rules_off).map(str).join(', ') || DASH, 'wrap'],
      ]);
      if (!w.alive) tr.className = 'dead';
      return tr;
    });
    fillBody($('workers'), rows);
    $('workers').classList.toggle('hidden', rows.length === 0);
    $('workers-empty').classList.toggle('hidden', rows.length !== 0);
  }

  function renderFeeds(feeds) {
    const rows = feeds.map((item) => {
      const f = obj(item);
      const stale = isNum(f.lag_seconds) && f.lag_seconds > 2;
      return row([
        [str(f.venue), 'name'],
        [str(f.symbol), 'name'],
        [fmtPrice(f.bid), 'num'],
        [fmtPrice(f.ask), 'num'],
        [fmtPrice(f.last), 'num'],
        [isNum(f.lag_seconds) ? f.lag_seconds.toFixed(2) : DASH, 'num' + (stale ? ' stale' : '')],
      ]);
    });
    fillBody($('feeds'), rows);
    $('feeds').classList.toggle('hidden', rows.length === 0);
    $('feeds-empty').classList.toggle('hidden', rows.length !== 0);
  }

  // ------------------------------------------------------------------ control panel

  const LIMIT_FIELDS = [
    'max_drawdown', 'daily_loss_limit', 'max_gross_exposure', 'max_symbol_exposure',
    'max_open_orders', 'max_orders_per_second', 'max_correlation', 'max_position_risk',
  ];
  const INTEGER_LIMITS = new Set(['max_open_orders', 'max_orders_per_second']);
  let controlSeq = 0;

  function showResult(text, kind) {
    setText($('control-result'), text);
    setClass($('control-result'), 'result ' + kind);
  }

  function renderLimitCurrent(limits) {
    const field = $('limit-field').value;
    const v = limits[field];
    setText($('limit-current'), field in limits ? 'now ' + field + ' = ' + (v === null ? 'none' : str(v)) : '');
  }

  /** The operator and reason typed in, or null (after saying so) when either is missing. */
  function who() {
    const operator = $('operator').value.trim();
    const reason = $('reason').value.trim();
    if (!operator || !reason) {
      showResult('refused: operator and reason are required', 'refused');
      return null;
    }
    return { operator, reason };
  }

  async function control(action, extra) {
    const person = who();
    if (!person) return;
    const seq = ++controlSeq;
    const token = $('token').value.trim();
    showResult(action + ' …', 'pending');
    let response;
    try {
      response = await fetch('/api/control/' + action, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token },
        body: JSON.stringify(Object.assign({}, person, extra)),
        cache: 'no-store',
        credentials: 'same-origin',
      });
    } catch (err) {
      if (seq === controlSeq) showResult('refused: ' + (err && err.message ? err.message : String(err)), 'refused');
      return;
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (seq !== controlSeq) return; // a newer action's outcome is what the line shows
    if (response.ok && isObj(data) && data.ok) {
      showResult('done: ' + str(data.done), 'ok');
    } else {
      const error = isObj(data) && data.error !== undefined ? str(data.error) : response.statusText || 'no reason given';
      showResult('refused (' + response.status + '): ' + error, 'refused');
    }
  }

  function setLimit() {
    if (!who()) return;
    const field = $('limit-field').value;
    const raw = $('limit-value').value.trim();
    if (!LIMIT_FIELDS.includes(field)) {
      showResult('refused: unknown limit ' + field, 'refused');
      return;
    }
    const value = Number(raw);
    if (raw === '' || !Number.isFinite(value)) {
      showResult('refused: ' + field + ' needs a number', 'refused');
      return;
    }
    if (INTEGER_LIMITS.has(field) && !Number.isInteger(value)) {
      showResult('refused: ' + field + ' needs a whole number', 'refused');
      return;
    }
    control('limits', { limits: { [field]: value } });
  }

  function onBreakerClick(event) {
    const target = event.target;
    const button = target && target.closest ? target.closest('button.br-force, button.br-reset') : null;
    if (!button) return;
    const tr = button.closest('tr');
    const name = tr ? tr.dataset.breaker : '';
    if (!name) return;
    control(button.classList.contains('br-force') ? 'force-open' : 'reset', { breaker: name });
  }

  function initControl() {
    const tokenInput = $('token');
    const operatorInput = $('operator');
    let fromHash = '';
    if (location.hash.length > 1) {
      try {
        fromHash = new URLSearchParams(location.hash.slice(1)).get('token') || '';
      } catch (_) {
        fromHash = '';
      }
    }
    if (fromHash) {
      tokenInput.value = fromHash;
      storeSet('bot4-token', fromHash);
      history.replaceState(null, '', location.pathname + location.search);
    } else {
      tokenInput.value = storeGet('bot4-token');
    }
    operatorInput.value = storeGet('bot4-operator');
    tokenInput.addEventListener('input', () => storeSet('bot4-token', tokenInput.value));
    operatorInput.addEventListener('input', () => storeSet('bot4-operator', operatorInput.value));
    $('control').addEventListener('submit', (event) => event.preventDefault());
    $('kill').addEventListener('click', () => control('kill', {}));
    $('resume').addEventListener('click', () => control('resume', {}));
    $('set-limit').addEventListener('click', setLimit);
    $('limit-field').addEventListener('change', () => renderLimitCurrent(obj(lastState && lastState.limits)));
    $('breakers').addEventListener('click', onBreakerClick);
    $('correlation').addEventListener('mousemove', onCorrelationHover);
    $('correlation').addEventListener('mouseleave', () => setText($('corr-hover'), '\u00a0'));
  }

  // ------------------------------------------------------------------ data: initial fetch + WebSocket

  let socket = null;
  let backoff = 1000;
  let retryTimer = 0;

  /** The history the charts draw: whole in the first state, then the newest points of each push. */
  let history = [];
  const HISTORY_MAX = 3600;

  function mergeHistory(state) {
    if (Array.isArray(state.history)) {
      history = state.history.filter((p) => isObj(p) && isNum(p.time));
    } else if (Array.isArray(state.history_tail)) {
      const last = history.length ? history[history.length - 1].time : -Infinity;
      for (const p of state.history_tail) {
        if (isObj(p) && isNum(p.time) && p.time > last) history.push(p);
      }
      if (history.length > HISTORY_MAX) history = history.slice(history.length - HISTORY_MAX);
    }
    state.history = history;
  }

  function accept(text) {
    let state;
    try {
      state = JSON.parse(text);
    } catch (_) {
      return; // a malformed message is ignored; the next one replaces it
    }
    if (!isObj(state)) return;
    mergeHistory(state);
    schedule(state);
  }

  function reconnectLater() {
    if (retryTimer) return;
    const delay = backoff;
    backoff = Math.min(backoff * 2, 10000);
    retryTimer = window.setTimeout(connect, delay);
  }

  function connect() {
    retryTimer = 0;
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (_) {
      setConnection(false);
      reconnectLater();
      return;
    }
    socket = ws;
    ws.onopen = () => {
      if (socket !== ws) return;
      backoff = 1000;
      setConnection(true);
    };
    ws.onmessage = (event) => {
      if (socket === ws && typeof event.data === 'string') accept(event.data);
    };
    ws.onerror = () => {
      if (socket === ws) setConnection(false); // close follows and schedules the reconnect
    };
    ws.onclose = () => {
      if (socket !== ws) return;
      socket = null;
      setConnection(false);
      reconnectLater();
    };
  }

  async function loadInitial() {
    try {
      const response = await fetch('/api/state', { cache: 'no-store', credentials: 'same-origin' });
      if (response.ok) accept(await response.text());
    } catch (_) {
      /* the WebSocket brings the state as soon as it connects */
    }
  }

  function start() {
    setConnection(false);
    initControl();
    window.addEventListener('resize', () => {
      if (lastState && !pending) schedule(lastState);
    });
    loadInitial().finally(connect);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
