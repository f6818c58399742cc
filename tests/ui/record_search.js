// Drives HEPop's web UI in the system's headless Chromium: a search by
// caller over days, answered from the call records; the result row's cells
// by column heading; then the row opened as a ladder. Prints what it saw as
// one JSON line; exits non-zero at the first thing missing.
// usage: node record_search.js <base url> <caller> <from ms> <to ms>
const { WAIT, fail, fillSearch, run } = require('./browser');

const [base, caller, fromMs, toMs] = process.argv.slice(2);

run(base, async (page) => {
  await fillSearch(page, fromMs, toMs, { caller });
  await page.click('#search button[type=submit]');
  await page.waitForSelector('#results tr.call', WAIT);
  const rows = await page.evaluate(() => {
    const heads = [...document.querySelectorAll('#results thead th')].map((h) => h.textContent);
    return [...document.querySelectorAll('#results tr.call')].map((r) => Object.fromEntries(
      [...r.cells].map((c, i) => [heads[i], c.textContent])));
  });
  if (!rows.length) fail('no result row');
  await page.click('#results tr.call');
  await page.waitForSelector('#ladder g.msg', WAIT);
  const arrows = await page.$$eval('#ladder g.msg line', (l) => l.length);
  return { rows, arrows };
});
