// Sonde's viewer. Everything it draws comes from /api/*, already reduced
// to the chart's pixel columns by the server (min, median and max per
// column; heatmap cells per column), so the page only paints.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  // What the page shows; exposed for tests and for the curious.
  const S = {
    info: null, id: null, params: {}, view: null, sel: null, cursor: null,
    charts: new Map(), epoch: 0, cols: null, data: null, drag: null,
  };
  window.sonde = S;

  const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b',
    '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];
  const QCOLORS = { p50: '#ffffff', p99: '#ffb000', p999: '#ff3d7f' };
  /** Shades a heatmap is drawn in. */
  const LEVELS = 64;
  const M = { l: 64, r: 10, t: 8, b: 22 };

  function state(s) { document.body.dataset.state = s; }

  // ---- formatting ---------------------------------------------------
  const SI = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  const IEC = [[2 ** 40, 'Ti'], [2 ** 30, 'Gi'], [2 ** 20, 'Mi'], [2 ** 10, 'Ki']];
  function num(v, scale) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    const a = Math.abs(v);
    for (const [f, p] of scale) if (a >= f) return (v / f).toPrecision(3) + ' ' + p;
    return a >= 100 || a === 0 ? v.toFixed(0) : v.toPrecision(3);
  }
  function secs(v) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    const a = Math.abs(v);
    if (a === 0) return '0';
    if (a < 1e-6) return (v * 1e9).toPrecision(3) + ' ns';
    if (a < 1e-3) return (v * 1e6).toPrecision(3) + ' µs';
    if (a < 1) return (v * 1e3).toPrecision(3) + ' ms';
    return v.toPrecision(3) + ' s';
  }
  function fmt(v, unit) {
    switch (unit) {
      // Below one CPU, a percentage of one: short enough for an axis.
      case 'cores':
        if (v === null || !isFinite(v)) return '–';
        if (v === 0) return '0';
        return Math.abs(v) >= 1 ? v.toPrecision(3) + ' CPU' : (v * 100).toPrecision(3) + ' %';
      case 'per_sec': return num(v, SI) + '/s';
      case 'bytes_per_sec': return num(v, IEC) + 'B/s';
      case 'bytes': return num(v, IEC) + 'B';
      case 'seconds': return secs(v);
      default: return num(v, SI);
    }
  }
  const pad = (n) => String(n).padStart(2, '0');
  // Offsets are seconds from a source's first row: absolute UTC times
  // for one source, +h:mm:ss for A/B.
  function ftime(off) {
    if (S.info.mode === 'ab') {
      const s = Math.round(off);
      const sign = s < 0 ? '-' : '+';
      const a = Math.abs(s);
      return sign + Math.floor(a / 3600) + ':' + pad(Math.floor(a / 60) % 60) + ':' + pad(a % 60);
    }
    const d = new Date((S.info.sources[0].start + off) * 1000);
    return pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds());
  }

  // ---- requests -------------------------------------------------------
  let pending = 0;
  async function get(path, params) {
    pending++;
    try {
      const r = await fetch(path + (params ? '?' + new URLSearchParams(params) : ''));
      let body;
      try { body = await r.json(); } catch (e) { body = { error: r.status + ' ' + r.statusText }; }
      if (!r.ok) throw new Error(body.error || r.statusText);
      return body;
    } finally {
      pending--;
    }
  }

  function problem(title, message, links) {
    const main = $('main');
    main.replaceChildren();
    S.charts.clear();
    const box = el('div', 'error wide');
    box.append(el('h2', null, title), el('p', null, message));
    if (links) {
      const p = el('p');
      for (const [href, text] of links) {
        const a = el('a', null, text);
        a.href = href;
        p.append(a, ' ');
      }
      box.append(p);
    }
    main.append(box);
    state('error');
  }

  // ---- header, navigation, routing ------------------------------------
  function header() {
    const src = $('sources');
    src.replaceChildren();
    for (const s of S.info.sources) {
      const span = el('span', 'src');
      if (S.info.mode === 'ab') span.append(el('span', 'tag', s.label));
      const dur = s.last - s.first;
      const at = new Date((s.start + s.first) * 1000).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
      span.append(s.name + ' · ' + at + ' · ' + Math.round(dur) + ' s at ' + s.interval + ' s');
      if (s.gaps.length) span.append(' · ' + s.gaps.length + ' gap' + (s.gaps.length > 1 ? 's' : ''));
      src.append(span);
    }
    const live = S.info.sources[0].live;
    const st = $('status');
    st.className = '';
    st.textContent = '';
    if (live) {
      $('save').hidden = false;
      $('followbox').hidden = false;
      if (live.error) {
        st.className = 'bad';
        st.textContent = 'agent unreachable: ' + live.error +
          (live.last_ok ? ' (last snapshot ' + Math.round(Date.now() / 1000 - live.last_ok) + ' s ago)' : '');
      } else {
        st.textContent = 'live · ' + live.polls + ' polls';
      }
    }
  }

  function nav() {
    const n = $('nav');
    n.replaceChildren();
    for (const s of S.info.sections.concat([{ id: 'query', title: 'Query' }])) {
      const a = el('a', s.id === S.id ? 'on' : '', s.title);
      a.href = '#' + s.id;
      n.append(a);
    }
  }

  function route() {
    const h = decodeURIComponent(location.hash.slice(1));
    const [id, q] = h.split('?');
    const next = id || 'overview';
    if (next !== S.id) {
      // The zoom stays (one time range for every section); a selection goes.
      S.sel = null;
      $('panel').hidden = true;
      $('main').replaceChildren();
      S.charts.clear();
    }
    S.id = next;
    S.params = Object.fromEntries(new URLSearchParams(q || ''));
    nav();
    load();
  }

  function go(id, params) {
    const q = new URLSearchParams(params || {}).toString();
    location.hash = id + (q ? '?' + q : '');
  }

  // ---- loading a section ------------------------------------------------
  function plotWidth() {
    const main = $('main');
    const cols = Math.max(1, Math.floor((main.clientWidth - 32 + 12) / (560 + 12)));
    const w = (main.clientWidth - 32 - (cols - 1) * 12) / cols - 22;
    return Math.max(200, Math.floor(w - M.l - M.r));
  }

  function range() {
    const r = {};
    if (S.view) { r.from = S.view[0]; r.to = S.view[1]; }
    return r;
  }

  // `quiet`: a live refresh, which keeps the page's ready state.
  async function load(quiet) {
    const epoch = ++S.epoch;
    if (!quiet) state('loading');
    $('zoomout').hidden = !S.view;
    $('range').textContent = S.view ? ftime(S.view[0]) + ' – ' + ftime(S.view[1]) : '';
    if (S.id === 'query') return queryPage(epoch);
    const sec = S.info.sections.find((s) => s.id === S.id);
    if (!sec) {
      return problem('Unknown section "' + S.id + '"',
        'This viewer has these sections; pick one.',
        S.info.sections.map((s) => ['#' + s.id, s.title]).concat([['#query', 'Query']]));
    }
    const params = Object.assign({ id: sec.id, px: plotWidth() }, range());
    if (sec.cgroup) {
      if (!S.info.cgroups.length) {
        return problem('No containers', 'This recording has no cgroup series (the cgroup sampler was off, or this is not a Sonde recording).');
      }
      params.cgroup = S.params.cgroup || S.info.cgroups.find((c) => c !== '/') || S.info.cgroups[0];
    }
    let data;
    try {
      data = await get('/api/section', params);
    } catch (e) {
      if (epoch === S.epoch) problem('Cannot draw ' + sec.title, e.message);
      return;
    }
    if (epoch !== S.epoch) return;
    try {
      render(sec, data, params.cgroup);
    } catch (e) {
      problem('Cannot draw ' + sec.title, String(e && e.stack || e));
    }
  }

  function render(sec, data, cgroup) {
    const main = $('main');
    if (main.querySelector('.error')) { main.replaceChildren(); S.charts.clear(); }
    S.cols = data.cols;
    S.data = data;
    if (sec.cgroup && !main.querySelector('.bar')) {
      const bar = el('div', 'card bar wide');
      const sel = el('select');
      sel.id = 'cgroup';
      for (const c of S.info.cgroups) {
        const o = el('option', null, c);
        o.value = c;
        sel.append(o);
      }
      sel.addEventListener('change', () => go(sec.id, { cgroup: sel.value }));
      bar.append(el('label', null, 'cgroup '), sel);
      main.append(bar);
    }
    if (sec.cgroup) $('cgroup').value = cgroup;
    S.renders = (S.renders || 0) + 1;
    const seen = new Set();
    for (const c of data.charts) {
      seen.add(c.id);
      let ch = S.charts.get(c.id);
      if (!ch) {
        ch = new Chart(c, main);
        S.charts.set(c.id, ch);
      }
      ch.set(c, data.cols);
    }
    for (const [id, ch] of S.charts) if (!seen.has(id)) { ch.card.remove(); S.charts.delete(id); }
    let miss = main.querySelector('.missing');
    if (data.missing.length) {
      if (!miss) { miss = el('p', 'missing wide'); main.append(miss); }
      miss.textContent = 'Not in this recording: ' + data.missing.join(', ') + '.';
    } else if (miss) miss.remove();
    if (!data.charts.length) {
      return problem('Nothing to draw', 'None of the families of ' + sec.title + ' are in this data: ' + data.missing.join(', ') + '.');
    }
    document.body.dataset.section = sec.id;
    state('ready');
  }

  // ---- charts ---------------------------------------------------------
  class Chart {
    constructor(c, parent) {
      this.card = el('div', 'card');
      this.card.dataset.chart = c.id;
      this.title = el('h3');
      this.plot = el('div', 'plot');
      this.base = el('canvas');
      this.over = el('canvas', 'overlay');
      this.legend = el('div', 'legend');
      this.plot.append(this.base, this.over);
      this.card.append(this.title, this.plot, this.legend);
      parent.append(this.card);
      this.events();
    }

    set(c, cols) {
      this.c = c;
      this.cols = cols;
      this.title.replaceChildren(c.title);
      if (c.note) this.title.append(el('span', 'note', c.note));
      const panels = c.kind === 'heatmap' ? Math.max(1, c.heat.length) : 1;
      this.h = c.kind === 'heatmap' ? 170 * panels : 170;
      this.draw();
    }

    size() {
      const w = this.plot.clientWidth || 600;
      const dpr = window.devicePixelRatio || 1;
      this.plot.style.height = this.h + 'px';
      for (const cv of [this.base, this.over]) {
        cv.width = Math.round(w * dpr);
        cv.height = Math.round(this.h * dpr);
        cv.style.width = w + 'px';
        cv.style.height = this.h + 'px';
        cv.getContext('2d').setTransform(dpr, 0, 0, dpr, 0, 0);
      }
      this.w = w;
      this.area = { l: M.l, r: w - M.r, t: M.t, b: this.h - M.b };
    }

    // Offset (s) to x (CSS px) and back.
    x(off) { const a = this.area; return a.l + (off - this.cols.from) / (this.cols.to - this.cols.from) * (a.r - a.l); }
    off(x) { const a = this.area; return this.cols.from + (x - a.l) / (a.r - a.l) * (this.cols.to - this.cols.from); }
    colX(i) { return this.x(this.cols.from + i * (this.cols.to - this.cols.from) / this.cols.n); }
    // A column's whole device pixels: no seams between columns.
    span(i) { const x0 = Math.floor(this.colX(i)); return [x0, Math.max(1, Math.floor(this.colX(i + 1)) - x0)]; }

    draw() {
      this.size();
      const g = this.base.getContext('2d');
      g.clearRect(0, 0, this.w, this.h);
      if (this.c.kind === 'heatmap') this.drawHeat(g); else this.drawLines(g);
      this.overlay();
    }

    xAxis(g, bottom) {
      const a = this.area;
      g.fillStyle = '#5f6b7a';
      g.font = '11px system-ui, sans-serif';
      g.textAlign = 'center';
      // Ticks at round times: at most one per 110 px.
      const span = this.cols.to - this.cols.from;
      const want = span / Math.max(2, Math.floor((a.r - a.l) / 110));
      const step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
        .find((s) => s >= want) || 86400 * Math.ceil(want / 86400);
      const origin = S.info.mode === 'ab' ? 0 : S.info.sources[0].start;
      for (let t = Math.ceil((this.cols.from + origin) / step) * step; t <= this.cols.to + origin; t += step) {
        const x = this.x(t - origin);
        g.fillRect(x, bottom, 1, 4);
        g.fillText(ftime(t - origin), Math.min(Math.max(x, a.l + 24), a.r - 24), bottom + 15);
      }
    }

    // No data: gaps between rows, and the time after a source ended.
    shadeMissing(g, top, bottom) {
      g.save();
      g.fillStyle = '#eef0f3';
      for (const s of S.info.sources) {
        for (const [a, b] of s.gaps) this.shade(g, a, b, top, bottom);
        if (S.info.mode === 'ab' && s.last < this.cols.to) this.shade(g, s.last, this.cols.to, top, bottom, s.label + ' ended');
      }
      g.restore();
    }

    shade(g, a, b, top, bottom, label) {
      const x0 = Math.max(this.area.l, this.x(a));
      const x1 = Math.min(this.area.r, this.x(b));
      if (x1 <= x0) return;
      g.fillStyle = '#eef0f3';
      g.fillRect(x0, top, x1 - x0, bottom - top);
      g.fillStyle = '#98a2ae';
      g.font = '11px system-ui, sans-serif';
      g.textAlign = 'left';
      if (x1 - x0 > 40) g.fillText(label || 'no data', x0 + 3, top + 12);
    }

    drawLines(g) {
      const a = this.area;
      const lines = this.c.lines;
      let hi = 0, lo = 0;
      for (const l of lines) for (let i = 0; i < l.max.length; i++) {
        if (l.max[i] !== null) hi = Math.max(hi, l.max[i]);
        if (l.min[i] !== null) lo = Math.min(lo, l.min[i]);
      }
      if (hi === lo) hi = lo + 1;
      hi *= 1.05;
      this.y = (v) => a.b - (v - lo) / (hi - lo) * (a.b - a.t);
      this.shadeMissing(g, a.t, a.b);
      // grid and y labels
      g.strokeStyle = '#e6e9ee';
      g.fillStyle = '#5f6b7a';
      g.font = '11px system-ui, sans-serif';
      g.textAlign = 'right';
      for (let i = 0; i <= 4; i++) {
        const v = lo + (hi - lo) * i / 4;
        const y = Math.round(this.y(v)) + 0.5;
        g.beginPath(); g.moveTo(a.l, y); g.lineTo(a.r, y); g.stroke();
        g.fillText(fmt(v, this.c.unit), a.l - 4, y + 4);
      }
      this.xAxis(g, a.b);
      const n = this.cols.n;
      const cw = (a.r - a.l) / n;
      this.legend.replaceChildren();
      lines.forEach((l, k) => {
        const color = this.color(l, k);
        // The band: every column's min to max, so a one-sample spike
        // shows at any zoom.
        g.globalAlpha = 0.3;
        g.fillStyle = color;
        for (let i = 0; i < n; i++) {
          if (l.max[i] === null) continue;
          const y0 = this.y(l.max[i]);
          const y1 = this.y(l.min[i]);
          // A column of one value is the median line's own.
          if (y1 - y0 < 1) continue;
          const [x, w] = this.span(i);
          g.fillRect(x, y0, w, y1 - y0);
        }
        g.globalAlpha = 1;
        g.strokeStyle = color;
        g.lineWidth = 1.5;
        g.setLineDash(l.source === 'B' ? [5, 3] : []);
        g.beginPath();
        let on = false;
        for (let i = 0; i < n; i++) {
          if (l.med[i] === null) { on = false; continue; }
          const x = this.colX(i) + cw / 2;
          const y = this.y(l.med[i]);
          if (on) g.lineTo(x, y); else g.moveTo(x, y);
          on = true;
        }
        g.stroke();
        g.setLineDash([]);
        // A value with no neighbour has no segment: a dot shows it.
        g.fillStyle = color;
        for (let i = 0; i < n; i++) {
          if (l.med[i] !== null && (i === 0 || l.med[i - 1] === null) && (i === n - 1 || l.med[i + 1] === null)) {
            g.fillRect(this.colX(i) + cw / 2 - 1.5, this.y(l.med[i]) - 1.5, 3, 3);
          }
        }
        const item = el('span');
        const sw = el('i', l.source === 'B' ? 'dash' : '');
        if (l.source === 'B') sw.style.borderColor = color; else sw.style.background = color;
        item.append(sw, (S.info.mode === 'ab' ? l.source + ' ' : '') + l.name);
        this.legend.append(item);
      });
    }

    color(l, k) {
      if (S.info.mode !== 'ab') return PALETTE[k % PALETTE.length];
      // A and B of one series share a color.
      const names = [...new Set(this.c.lines.map((x) => x.name))];
      return PALETTE[names.indexOf(l.name) % PALETTE.length];
    }

    drawHeat(g) {
      const a = this.area;
      const heats = this.c.heat;
      this.legend.replaceChildren();
      if (!heats.length) return;
      const ph = (a.b - a.t) / heats.length;
      let lo = Infinity, hi = 0, vmax = 0;
      for (const h of heats) {
        for (const [l, u] of h.buckets) { lo = Math.min(lo, l > 0 ? l : u / 2); hi = Math.max(hi, u); }
        for (const c of h.cells) if (c) for (const [, v] of c) vmax = Math.max(vmax, v);
      }
      if (!isFinite(lo)) { lo = 1e-9; hi = 1; }
      if (hi <= lo) hi = lo * 10;
      const [llo, lhi] = [Math.log(lo), Math.log(hi)];
      this.panels = [];
      const n = this.cols.n;
      const cw = (a.r - a.l) / n;
      heats.forEach((h, k) => {
        const top = a.t + k * ph + (k ? 6 : 0);
        const bottom = a.t + (k + 1) * ph - (k < heats.length - 1 ? 6 : 0);
        const y = (v) => bottom - (Math.log(Math.max(v, lo)) - llo) / (lhi - llo) * (bottom - top);
        this.panels.push({ top, bottom, y, h });
        g.fillStyle = '#f3f4f6';
        g.fillRect(a.l, top, a.r - a.l, bottom - top);
        this.shadeMissing(g, top, bottom);
        // Cells are filled a colour at a time (LEVELS shades): a colour
        // per cell cost more in building and parsing it than the fill.
        const byLevel = Array.from({ length: LEVELS + 1 }, () => []);
        g.fillStyle = '#0b1d3a';
        for (let i = 0; i < n; i++) {
          const c = h.cells[i];
          if (!c) continue;
          const [x, w] = this.span(i);
          g.fillRect(x, top, w, bottom - top);
          for (const [r, v] of c) {
            const [bl, bu] = h.buckets[r];
            const y0 = Math.floor(y(bu));
            const y1 = Math.ceil(y(bl > 0 ? bl : lo));
            const t = vmax > 0 ? Math.log1p(v) / Math.log1p(vmax) : 0;
            byLevel[Math.round(Math.min(1, Math.max(0, t)) * LEVELS)].push(x, y0, w, Math.max(y1 - y0, 2));
          }
        }
        byLevel.forEach((rects, k) => {
          if (!rects.length) return;
          g.fillStyle = ramp(k / LEVELS);
          for (let j = 0; j < rects.length; j += 4) g.fillRect(rects[j], rects[j + 1], rects[j + 2], rects[j + 3]);
        });
        for (const q of ['p50', 'p99', 'p999']) {
          g.strokeStyle = QCOLORS[q];
          g.lineWidth = 1.2;
          g.beginPath();
          let on = false;
          for (let i = 0; i < n; i++) {
            const v = h[q][i];
            if (v === null) { on = false; continue; }
            const xx = this.colX(i) + cw / 2;
            if (on) g.lineTo(xx, y(v)); else g.moveTo(xx, y(v));
            on = true;
          }
          g.stroke();
        }
        g.fillStyle = '#5f6b7a';
        g.font = '11px system-ui, sans-serif';
        g.textAlign = 'right';
        for (let i = 0; i <= 3; i++) {
          const v = Math.exp(llo + (lhi - llo) * i / 3);
          g.fillText(fmt(v, this.c.unit), a.l - 4, y(v) + 4);
        }
        if (heats.length > 1) {
          g.textAlign = 'left';
          g.fillStyle = '#fff';
          g.fillText(h.source, a.l + 4, top + 12);
        }
      });
      this.xAxis(g, a.b);
      for (const [q, name] of [['p50', 'p50'], ['p99', 'p99'], ['p999', 'p99.9']]) {
        const item = el('span');
        const sw = el('i');
        sw.style.background = q === 'p50' ? '#9aa4b1' : QCOLORS[q];
        item.append(sw, name);
        this.legend.append(item);
      }
      this.legend.append(el('span', null, 'color: events per second in the bucket (log), up to ' + num(vmax, SI) + '/s'));
    }

    overlay() {
      const g = this.over.getContext('2d');
      const a = this.area;
      g.clearRect(0, 0, this.w, this.h);
      if (S.sel) {
        const x0 = Math.max(a.l, this.x(Math.min(...S.sel)));
        const x1 = Math.min(a.r, this.x(Math.max(...S.sel)));
        g.fillStyle = 'rgba(31, 78, 121, 0.15)';
        g.fillRect(x0, a.t, Math.max(1, x1 - x0), a.b - a.t);
      }
      if (S.cursor !== null && S.cursor >= this.cols.from && S.cursor <= this.cols.to) {
        const x = Math.round(this.x(S.cursor)) + 0.5;
        g.strokeStyle = '#1d2330';
        g.setLineDash([3, 3]);
        g.beginPath(); g.moveTo(x, a.t); g.lineTo(x, a.b); g.stroke();
        g.setLineDash([]);
      }
    }

    column(off) {
      const i = Math.floor((off - this.cols.from) / (this.cols.to - this.cols.from) * this.cols.n);
      return i >= 0 && i < this.cols.n ? i : null;
    }

    tip(off) {
      const i = this.column(off);
      if (i === null) return null;
      const w = (this.cols.to - this.cols.from) / this.cols.n;
      const head = ftime(this.cols.from + i * w) + (w > 1.5 ? ' (' + Math.round(w) + ' s)' : '');
      const out = [head];
      if (this.c.kind === 'lines') {
        for (const l of this.c.lines) {
          const name = (S.info.mode === 'ab' ? l.source + ' ' : '') + l.name;
          if (l.med[i] === null) { out.push(name + ': no data'); continue; }
          const range = l.min[i] !== l.max[i] ? '  (' + fmt(l.min[i], this.c.unit) + ' … ' + fmt(l.max[i], this.c.unit) + ')' : '';
          out.push(name + ': ' + fmt(l.med[i], this.c.unit) + range);
        }
        return out.join('\n');
      }
      for (const h of this.c.heat) {
        const c = h.cells[i];
        if (S.info.mode === 'ab') out.push(h.source + ':');
        if (!c) { out.push('  no data'); continue; }
        out.push('  ' + num(h.rate[i], SI) + ' events/s   p50 ' + fmt(h.p50[i], this.c.unit) +
          '   p99 ' + fmt(h.p99[i], this.c.unit) + '   p99.9 ' + fmt(h.p999[i], this.c.unit));
        const total = c.reduce((s, [, v]) => s + v, 0);
        // The 12 fullest buckets, slowest first.
        const full = c.slice().sort((x, y) => y[1] - x[1]).slice(0, 12);
        for (const [r, v] of full.sort((x, y) => h.buckets[y[0]][0] - h.buckets[x[0]][0])) {
          const [bl, bu] = h.buckets[r];
          const bar = '█'.repeat(Math.max(1, Math.round(v / total * 30)));
          out.push('  ' + (fmt(bl, this.c.unit) + ' – ' + fmt(bu, this.c.unit)).padEnd(22) + ' ' + bar + ' ' + num(v, SI) + '/s');
        }
      }
      return out.join('\n');
    }

    events() {
      const o = this.over;
      const at = (e) => this.off(e.clientX - o.getBoundingClientRect().left);
      o.addEventListener('mousemove', (e) => {
        const t = at(e);
        if (S.drag !== null) S.sel = [S.drag, t];
        S.cursor = t;
        for (const ch of S.charts.values()) ch.overlay();
        const tip = $('tip');
        const text = this.tip(t);
        if (text) {
          tip.textContent = text;
          tip.hidden = false;
          const x = e.clientX + 14 + 430 > window.innerWidth ? e.clientX - 440 : e.clientX + 14;
          tip.style.left = Math.max(0, x) + 'px';
          tip.style.top = (e.clientY + 14) + 'px';
        }
      });
      o.addEventListener('mouseleave', () => {
        S.cursor = null;
        $('tip').hidden = true;
        for (const ch of S.charts.values()) ch.overlay();
      });
      o.addEventListener('mousedown', (e) => { S.drag = at(e); S.sel = null; e.preventDefault(); });
      o.addEventListener('dblclick', () => { S.view = null; S.sel = null; $('panel').hidden = true; load(); });
    }
  }

  // Dark blue through purple and orange to yellow: heat.
  const STOPS = [[0.0, [40, 80, 190]], [0.35, [120, 40, 150]], [0.65, [230, 90, 60]], [1.0, [255, 230, 80]]];
  function ramp(t) {
    t = Math.min(1, Math.max(0, t));
    for (let i = 1; i < STOPS.length; i++) {
      if (t <= STOPS[i][0]) {
        const [t0, c0] = STOPS[i - 1];
        const [t1, c1] = STOPS[i];
        const f = (t - t0) / (t1 - t0);
        return 'rgb(' + c0.map((c, j) => Math.round(c + (c1[j] - c) * f)).join(',') + ')';
      }
    }
    return 'rgb(255,230,80)';
  }

  window.addEventListener('mouseup', () => {
    if (S.drag === null) return;
    S.drag = null;
    if (!S.sel || !S.charts.size) return;
    const ch = S.charts.values().next().value;
    if (Math.abs(ch.x(S.sel[0]) - ch.x(S.sel[1])) < 4) { S.sel = null; for (const c of S.charts.values()) c.overlay(); return; }
    S.sel = [Math.min(...S.sel), Math.max(...S.sel)];
    brushed();
  });

  window.sonde.select = (from, to) => { S.sel = [from, to]; brushed(); };

  // ---- a brushed range: its table and what changed ----------------------
  let brushes = 0;
  async function brushed() {
    const mine = ++brushes;
    const [from, to] = S.sel;
    const panel = $('panel');
    panel.hidden = false;
    panel.replaceChildren(el('h2', null, 'Range ' + ftime(from) + ' – ' + ftime(to) + ' …'));
    const sec = S.info.sections.find((s) => s.id === S.id);
    if (!sec) { panel.hidden = true; return; }
    const params = { id: sec.id, from, to };
    if (sec.cgroup) params.cgroup = $('cgroup').value;
    let r;
    try {
      r = await get('/api/range', params);
    } catch (e) {
      if (mine === brushes) panel.replaceChildren(el('h2', null, 'Range'), el('p', 'error', e.message));
      return;
    }
    // A newer selection's answer wins.
    if (mine !== brushes) return;
    const h = el('h2', null, 'Range ' + ftime(from) + ' – ' + ftime(to) + ' (' + Math.round(to - from) + ' s)');
    const zoom = el('button', null, 'Zoom in');
    zoom.addEventListener('click', () => { S.view = [from, to]; S.sel = null; panel.hidden = true; load(); });
    const close = el('button', null, 'Close');
    close.addEventListener('click', () => { S.sel = null; panel.hidden = true; for (const c of S.charts.values()) c.overlay(); });
    h.append(el('span', 'sp'), zoom, close);
    const t = el('table');
    const hr = el('tr');
    for (const c of ['chart', 'series', 'min', 'mean', 'p99', 'max', 'before', 'change']) hr.append(el('th', null, c));
    t.append(hr);
    for (const s of r.stats) {
      const tr = el('tr');
      const change = s.before !== null && s.mean !== null && s.before !== 0 ? (s.mean - s.before) / Math.abs(s.before) : null;
      const cells = [s.chart, (S.info.mode === 'ab' ? s.source + ' ' : '') + s.series, fmt(s.min, s.unit), fmt(s.mean, s.unit),
        fmt(s.p99, s.unit), fmt(s.max, s.unit), fmt(s.before, s.unit), change === null ? '–' : (change >= 0 ? '+' : '') + (change * 100).toFixed(0) + ' %'];
      cells.forEach((c, i) => {
        const td = el('td', i === 7 && change !== null && Math.abs(change) >= 0.2 ? (change > 0 ? 'up' : 'down') : '', c === undefined || c === null ? '–' : c);
        tr.append(td);
      });
      t.append(tr);
    }
    const ch = el('table');
    const chr = el('tr');
    for (const c of ['what changed here', 'as', 'before', 'after', 'KS D']) chr.append(el('th', null, c));
    ch.append(chr);
    for (const c of r.changed) {
      const tr = el('tr');
      for (const v of [c.series, c.derived, num(c.before, SI), num(c.after, SI), c.d.toFixed(2)]) tr.append(el('td', null, v));
      ch.append(tr);
    }
    if (!r.changed.length) { const tr = el('tr'); tr.append(el('td', null, 'nothing changed by KS ≥ 0.3 and 5 %')); ch.append(tr); }
    const cols = el('div', 'cols');
    const left = el('div');
    left.append(el('p', 'missing', 'Before: ' + r.baseline + '.'), t);
    cols.append(left, ch);
    panel.replaceChildren(h, cols);
  }

  // ---- the query box ---------------------------------------------------
  const EXAMPLES = [
    'sum by (op) (rate(syscalls[1m]))',
    'histogram_quantile(0.99, rate(scheduler_runqueue_latency[1m]))',
    'sum by (state) (rate(cpu_usage_seconds_total[1m]))',
    'topk(5, rate(namedprocess_namegroup_cpu_seconds_total[1m]))',
  ];

  async function queryPage(epoch) {
    const main = $('main');
    let bar = main.querySelector('.bar');
    if (!bar) {
      main.replaceChildren();
      S.charts.clear();
      bar = el('div', 'card bar wide');
      const input = el('input');
      input.type = 'text';
      input.id = 'expr';
      input.placeholder = 'PromQL, e.g. ' + EXAMPLES[0];
      const run = el('button', null, 'Run');
      const submit = () => go('query', { expr: input.value });
      run.addEventListener('click', submit);
      input.addEventListener('keydown', (e) => { if (e.key === 'Enter') submit(); });
      const ex = el('div', 'examples wide');
      for (const x of EXAMPLES) {
        const a = el('a', null, x);
        a.addEventListener('click', () => go('query', { expr: x }));
        ex.append(a);
      }
      const msg = el('p', 'qmsg wide');
      bar.append(input, run, ex, msg);
      main.append(bar);
    }
    const expr = S.params.expr || '';
    $('expr').value = expr;
    const msg = bar.querySelector('.qmsg');
    msg.className = 'qmsg wide';
    msg.textContent = expr ? 'Running…' : 'Metrics answer to their registry names (stored units) and to their /metrics names.';
    for (const ch of S.charts.values()) ch.card.remove();
    S.charts.clear();
    document.body.dataset.section = 'query';
    if (!expr) { state('ready'); return; }
    let r;
    try {
      r = await get('/api/query', Object.assign({ expr, px: plotWidth() }, range()));
    } catch (e) {
      if (epoch !== S.epoch) return;
      msg.className = 'qmsg wide error';
      msg.textContent = e.message;
      state('ready');
      return;
    }
    if (epoch !== S.epoch) return;
    S.cols = r.cols;
    msg.textContent = r.series + ' series' + (r.series > r.lines.length ? ', ' + r.lines.length + ' drawn' : '') + ', evaluated every ' + secs(r.step);
    const c = { id: 'query', kind: 'lines', title: expr, unit: 'count', lines: r.lines, note: null };
    const ch = new Chart(c, main);
    ch.card.classList.add('wide');
    S.charts.set('query', ch);
    ch.set(c, r.cols);
    state('ready');
  }

  // ---- live -----------------------------------------------------------
  async function tick() {
    try {
      S.info = await get('/api/info');
    } catch (e) {
      $('status').className = 'bad';
      $('status').textContent = 'the viewer stopped answering: ' + e.message;
      return;
    }
    header();
    if ($('follow').checked && !S.view && !S.sel && S.drag === null && S.id !== 'query' && pending === 0) load(true);
  }

  async function start() {
    try {
      S.info = await get('/api/info');
    } catch (e) {
      return problem('Cannot read the data', e.message);
    }
    header();
    $('zoomout').addEventListener('click', () => { S.view = null; S.sel = null; $('panel').hidden = true; load(); });
    window.addEventListener('hashchange', route);
    let resize = null;
    // Only a new width needs new columns (a full-page screenshot changes the height).
    let width = plotWidth();
    window.addEventListener('resize', () => {
      clearTimeout(resize);
      resize = setTimeout(() => { if (plotWidth() !== width) { width = plotWidth(); load(); } }, 250);
    });
    route();
    const live = S.info.sources[0].live;
    if (live) setInterval(tick, Math.max(1000, S.info.sources[0].interval * 1000));
  }

  window.addEventListener('error', (e) => problem('The page failed', String(e.message)));
  window.addEventListener('unhandledrejection', (e) => problem('The page failed', String(e.reason && e.reason.message || e.reason)));
  start();
})();
