"""Build the book offline and check it in a real browser.

    python .ci/book.py                 # build _book/ (one HTML page a chapter), check every page in headless Chromium
    python .ci/book.py --only 05_posterior --shots   # one chapter, with screenshots in _book/_shots/
    python .ci/book.py --serve 8000    # build, check, then serve the book on http://127.0.0.1:8000/

The pages come from what nbdev's docs build makes of the notebooks: its processing step, the one `nbdev_docs` and
the deploy workflow run before Quarto, writes `_proc/`. Here nbconvert renders those, with MathJax 2.7 copied from
the `jupyter-server-mathjax` package, so the book needs no network. Each page is then opened in Chromium (over the
DevTools protocol) and checked once MathJax has typeset it: no MathJax error, no raw `$` math left, every image
loaded, no error or stderr output in a cell. One line a page, then a total; the exit status is 1 when a page fails."""
import argparse, ast, base64, json, os, re, shutil, subprocess, sys, tempfile, time
from configparser import ConfigParser
from contextlib import ExitStack
from pathlib import Path

import functools, http.server, threading

import nbformat, yaml
from nbconvert import HTMLExporter
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / '_book'
# MathJax's combined TeX config with its HTML-CSS output; the package ships only the STIX-Web web fonts, so use those
# (the default, TeX fonts, would fall back to the system's fonts and misplace accents).
MATHJAX_URL = 'mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe'
MATHJAX_FONTS = ('<script type="text/x-mathjax-config">MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], '
                 'preferredFont: null, webFont: "STIX-Web", imageFont: null}});</script>')
SHOT_SIZE = (1100, 1500)  # width and height of one screenshot tile, in CSS pixels


def chapters():
    "The notebooks in the sidebar's reading order."
    sidebar = yaml.safe_load((ROOT / 'nbs' / 'sidebar.yml').read_text())
    return [Path(p).stem for p in sidebar['website']['sidebar']['contents']]


def contents():
    "Page and title of every chapter, read off the notebooks (nbdev names a page by the notebook, less its number)."
    pages, titles = {}, {}
    for n in chapters():
        nb = nbformat.read(ROOT / 'nbs' / f'{n}.ipynb', as_version=4)
        heading = next(c.source for c in nb.cells if c.cell_type == 'markdown' and c.source.startswith('# '))
        pages[n], titles[n] = re.sub(r'^\d+_', '', n) + '.html', heading.splitlines()[0][2:].strip()
    return pages, titles


def frontmatter(nb):
    "Title, description and output file from the raw YAML cell nbdev puts first."
    cell = nb.cells[0]
    if cell.cell_type != 'raw' or not cell.source.startswith('---'): raise ValueError('no frontmatter cell')
    return yaml.safe_load(cell.source.strip().strip('-'))


def directives(source):
    "Quarto's `#| key: value` lines at the top of a cell, and the source without them."
    lines, opts = source.splitlines(), {}
    while lines and lines[0].startswith('#|'):
        key, _, value = lines.pop(0)[2:].partition(':')
        opts[key.strip()] = value.strip()
    return opts, '\n'.join(lines)


def quarto_markdown_to_html(text):
    "show_doc's markdown uses pandoc attributes on its source link; turn that link into plain HTML."
    return re.sub(r'\[source\]\(([^)]+)\)\{[^}]*\}', r'<a class="source-link" href="\1">source</a>', text)


def prepare(nb):
    "Apply what Quarto would: drop the frontmatter for a title, hide `echo: false` sources, strip directives."
    fm = frontmatter(nb)
    head = f"# {fm['title']}\n\n> {fm.get('description', '')}" if fm.get('description') else f"# {fm['title']}"
    nb.cells[0] = nbformat.v4.new_markdown_cell(head)
    for cell in nb.cells:
        if cell.cell_type != 'code': continue
        opts, cell.source = directives(cell.source)
        if opts.get('echo') == 'false': cell.metadata['transient'] = {'remove_source': True}
        for out in cell.get('outputs', []):
            if 'text/markdown' in out.get('data', {}):
                out['data']['text/markdown'] = quarto_markdown_to_html(out['data']['text/markdown'])
    return fm


def link_map(pages, settings):
    "Rewrites of links: notebook names and the published site's pages to the local pages."
    site = (settings['doc_host'] + settings['doc_baseurl']).rstrip('/') + '/'
    def fix(html):
        html = re.sub(r'href="([\w-]+)\.ipynb(#[^"]*)?"',
                      lambda m: f'href="{pages.get(m[1], m[1] + ".html")}{m[2] or ""}"', html)
        return html.replace(f'href="{site}', 'href="')
    return fix


def nav_bar(pages, titles, current):
    links = ' · '.join(f'<a href="{pages[c]}"{" class=current" if c == current else ""}>{titles[c]}</a>'
                       for c in pages)
    return (f'<nav class="book-nav">{links}</nav>'
            '<style>.book-nav{font:14px sans-serif;padding:8px 16px;border-bottom:1px solid #ddd;line-height:1.8}'
            '.book-nav a{text-decoration:none}.book-nav a.current{font-weight:bold}'
            '.source-link{float:right;font-size:smaller}</style>')


def mixed_import_cells(names):
    "Cells nbdev's docs processing would run out of context: imports beside other code (it executes every import cell)."
    found = []
    for n in names:
        for i, cell in enumerate(nbformat.read(ROOT / 'nbs' / f'{n}.ipynb', as_version=4).cells):
            opts, source = directives(cell.source) if cell.cell_type == 'code' else ({}, '')
            if not source or 'nbdev_export()' in source or opts.get('eval') == 'false': continue
            if {'export', 'exports', 'exporti', 'exec_doc'} & set(opts): continue
            try: nodes = list(ast.walk(ast.parse(source)))
            except SyntaxError: continue
            if (any(isinstance(t, (ast.Import, ast.ImportFrom)) for t in nodes)
                    and any(isinstance(t, (ast.Expr, ast.Assign)) for t in nodes)):
                found.append(f'{n} cell {i}: {source.splitlines()[0][:70]}')
    return found


def build(names):
    "Process the notebooks as nbdev's docs build does, then render each chapter to _book/<output-file>."
    if mixed := mixed_import_cells(names):
        sys.exit('cells that mix imports with other code (nbdev\'s docs build would run them; put the imports in a '
                 'cell of their own):\n  ' + '\n  '.join(mixed))
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT / 'settings.ini'); settings = cfg['DEFAULT']
    # nbdev_proc_nbs would first try to install Quarto (and pip install the project): call its processing step
    # directly, forced (its cache compares notebooks with the time of its last run, and misses earlier edits).
    others = r'^[_.]|^(?!(?:' + '|'.join(map(re.escape, names)) + r')\.ipynb$).*\.ipynb$'   # not asked for
    code = f'from nbdev.serve import proc_nbs; proc_nbs(n_workers=2, force=True, skip_file_re={others!r})'
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode: sys.exit(f'nbdev\'s docs processing failed:\n{proc.stderr[-3000:]}')
    BOOK.mkdir(exist_ok=True)
    import jupyter_server_mathjax
    mathjax = Path(jupyter_server_mathjax.__file__).parent / 'static'
    if not (BOOK / 'mathjax').exists(): shutil.copytree(mathjax, BOOK / 'mathjax')
    nbs = {n: nbformat.read(ROOT / '_proc' / f'{n}.ipynb', as_version=4) for n in names}
    fms = {n: prepare(nb) for n, nb in nbs.items()}
    pages, titles = contents()
    for n, fm in fms.items(): pages[n], titles[n] = fm['output-file'], fm['title']
    fix_links = link_map(pages, settings)
    exporter = HTMLExporter(template_name='lab', mathjax_url=MATHJAX_URL, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    for n in names:
        html, _ = exporter.from_notebook_node(nbs[n])
        html = re.sub(r'(<body[^>]*>)', lambda m: m[1] + nav_bar(pages, titles, n), fix_links(html), count=1)
        html = html.replace(f'<script src="{MATHJAX_URL}"> </script>', f'<script src="{MATHJAX_URL}"> </script>'
                            + MATHJAX_FONTS, 1)
        (BOOK / pages[n]).write_text(html, encoding='utf-8')
    return {n: pages[n] for n in names}


# What is checked on the typeset page. Runs in the page once MathJax's queue (with its typesetting) is done.
CHECK_JS = r"""
new Promise(done => {
  const report = () => {
    const skip = 'script, style, pre, code, .MathJax, .MathJax_Display, .MathJax_Preview, .MathJax_SVG';
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const raw = [];
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const p = n.parentElement;
      const tex = /\$|\\\(|\\\[|\\begin\{/;
      if (p && !p.closest(skip) && tex.test(n.textContent)) raw.push(n.textContent.trim().slice(0, 80));
    }
    const imgs = [...document.images];
    done({
      mathjax: !!window.MathJax,
      formulas: window.MathJax ? MathJax.Hub.getAllJax().length : 0,
      math_errors: document.querySelectorAll('.merror, .MathJax_Error, .noError').length,
      raw_math: raw.slice(0, 5), raw_math_count: raw.length,
      figures: imgs.length,
      broken_images: imgs.filter(i => !i.complete || i.naturalWidth === 0).length,
      error_outputs: document.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]').length,
      height: document.documentElement.scrollHeight,
    });
  };
  if (window.MathJax) MathJax.Hub.Queue(report); else report();
})
"""


class Browser:
    "Headless Chromium driven over the DevTools protocol, one tab."
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix='book-chromium-')
        self.proc = subprocess.Popen(
            ['chromium', '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync',
             '--allow-file-access-from-files', '--hide-scrollbars', f'--user-data-dir={self.profile}',
             '--remote-debugging-port=0', 'about:blank'], stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            if m := re.search(r'DevTools listening on (ws://\S+)', line): break
        else: raise RuntimeError('chromium did not start')
        self.stack = ExitStack()
        self.ws, self.next_id = self.stack.enter_context(connect(m[1], max_size=None, open_timeout=30)), 0
        target = self.send('Target.createTarget', url='about:blank')['targetId']
        self.session = self.send('Target.attachToTarget', targetId=target, flatten=True)['sessionId']
        self.send('Page.enable', session=True)
        self.send('Emulation.setDeviceMetricsOverride', session=True, width=SHOT_SIZE[0], height=SHOT_SIZE[1],
                  deviceScaleFactor=1, mobile=False)

    def send(self, method, session=False, timeout=120, **params):
        self.next_id += 1
        msg = {'id': self.next_id, 'method': method, 'params': params}
        if session: msg['sessionId'] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv(timeout=timeout))
            if reply.get('id') == self.next_id:
                if 'error' in reply: raise RuntimeError(f"{method}: {reply['error']}")
                return reply['result']

    def open(self, url):
        self.send('Page.navigate', session=True, url=url)
        while True:  # the load event: the page's scripts, MathJax included, have run
            if json.loads(self.ws.recv(timeout=120)).get('method') == 'Page.loadEventFired': break
        r = self.send('Runtime.evaluate', session=True, expression=CHECK_JS, awaitPromise=True, returnByValue=True)
        return r['result']['value']

    def screenshots(self, height, stem, folder):
        folder.mkdir(exist_ok=True)
        for old in folder.glob(f'{stem}-*.png'): old.unlink()
        w, h = SHOT_SIZE
        for k, y in enumerate(range(0, height, h)):
            shot = self.send('Page.captureScreenshot', session=True, format='png', captureBeyondViewport=True,
                             clip={'x': 0, 'y': y, 'width': w, 'height': min(h, height - y), 'scale': 1})
            (folder / f'{stem}-{k:02d}.png').write_bytes(base64.b64decode(shot['data']))

    def close(self):
        self.stack.close(); self.proc.terminate(); self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def failures(r):
    "What is wrong with a page, in words (empty when it passes)."
    out = []
    if not r['mathjax']: out.append('MathJax did not load')
    if r['math_errors']: out.append(f"{r['math_errors']} MathJax errors")
    if r['raw_math_count']: out.append(f"{r['raw_math_count']} raw math left, e.g. {r['raw_math'][0]!r}")
    if r['broken_images']: out.append(f"{r['broken_images']} images not loaded")
    if r['error_outputs']: out.append(f"{r['error_outputs']} error/stderr outputs")
    return out


def serve(port=0):
    "Serve _book/ on localhost (web fonts do not load from file:// pages); returns the server, running in a thread."
    handler = functools.partial(QuietHandler, directory=str(BOOK))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


def check(pages, shots=False):
    server = serve()
    base = f'http://127.0.0.1:{server.server_address[1]}/'
    browser, bad, t0 = Browser(), 0, time.time()
    try:
        totals = dict(formulas=0, figures=0)
        for name, page in pages.items():
            r = browser.open(base + page)
            problems = failures(r)
            bad += bool(problems)
            totals['formulas'] += r['formulas']; totals['figures'] += r['figures']
            print(f"{name:16s} {page:18s} {r['formulas']:5d} formulas typeset {r['figures']:4d} figures   "
                  + ('; '.join(problems) if problems else 'ok'), flush=True)
            if shots: browser.screenshots(r['height'], Path(page).stem, BOOK / '_shots')
    finally: browser.close(); server.shutdown()
    print(f"total: {len(pages)} pages, {totals['formulas']} formulas, {totals['figures']} figures, "
          f"{bad} pages failing ({time.time() - t0:.0f} s in the browser)")
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--only', nargs='+', help='chapters to build and check (notebook names without .ipynb)')
    ap.add_argument('--shots', action='store_true', help='also write screenshots to _book/_shots/')
    ap.add_argument('--no-check', action='store_true', help='build only')
    ap.add_argument('--serve', type=int, metavar='PORT', help='after building, serve the book on localhost:PORT')
    args = ap.parse_args()
    names = chapters()
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown: sys.exit(f'--only: not chapters in nbs/sidebar.yml: {sorted(unknown)}')
        names = args.only
    t0 = time.time()
    pages = build(names)
    print(f'built {len(pages)} pages in {BOOK.relative_to(ROOT)}/ in {time.time() - t0:.0f} s; open '
          f'{(BOOK / "index.html").relative_to(ROOT)}', flush=True)
    failing = 0 if args.no_check else check(pages, args.shots)
    if args.serve is not None:
        serve(args.serve)
        print(f'serving the book on http://127.0.0.1:{args.serve}/index.html (Ctrl-C stops)', flush=True)
        try: threading.Event().wait()
        except KeyboardInterrupt: pass
    sys.exit(1 if failing else 0)


if __name__ == '__main__': main()
