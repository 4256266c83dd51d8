// Opens OHIF on a study, loads the SEG series shown in its study browser, and writes a screenshot.
// node ohif_screenshot.mjs <viewer URL> <SEG SeriesDescription> <out.png>; CHROMIUM: the browser to drive.
import { chromium } from 'playwright-core';

const [url, segDescription, out] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--use-gl=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 850 } });
const log = [];
page.on('console', m => log.push(`${m.type()}: ${m.text()}`));
try {
  await page.goto(url, { waitUntil: 'load', timeout: 120000 });
  // the first-visit tour and the investigational-use banner cover the viewport
  for (const name of [/skip all/i, /confirm and hide/i]) {
    const button = page.getByRole('button', { name }).or(page.getByText(name)).first();
    try {
      await button.waitFor({ timeout: 20000 });
      await button.click();
    } catch (err) {}
  }
  // the SEG's thumbnail in the study browser: double-click loads it into the viewport
  const thumbnail = page.getByText(segDescription, { exact: false }).first();
  await thumbnail.waitFor({ timeout: 120000 });
  await thumbnail.dblclick();
  await page.waitForTimeout(8000);
  const yes = page.getByRole('button', { name: /^(yes|load)/i });
  if (await yes.count()) {
    await yes.first().click();
    await page.waitForTimeout(8000);
  }
  await page.waitForTimeout(4000);
  await page.screenshot({ path: out });
} catch (err) {
  await page.screenshot({ path: out.replace(/\.png$/, '_failed.png') });
  console.error(log.slice(-15).join('\n'));
  console.error(`ohif_screenshot: ${err}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
