// Money on the page: amounts arrive as integers in the currency's minor unit, with the
// currency's ISO 4217 exponent from the event document (`currency_exponent`: 2 for EUR, 0 for
// JPY, 3 for KWD). Never divide by 100 blindly.

/** `minor` (an integer) as a decimal string with `exponent` fraction digits, exactly. */
export function decimal(minor, exponent) {
  const sign = minor < 0 ? '-' : '';
  const digits = String(Math.abs(minor)).padStart(exponent + 1, '0');
  if (exponent === 0) return sign + digits;
  return `${sign}${digits.slice(0, -exponent)}.${digits.slice(-exponent)}`;
}

/** `minor` units of `currency` for people, in the browser's locale: 4500 EUR 2 → "€45.00". */
export function formatMoney(minor, currency, exponent) {
  const text = decimal(minor, exponent);
  try {
    const format = new Intl.NumberFormat(undefined, {
      style: 'currency',
      currency,
      minimumFractionDigits: exponent,
      maximumFractionDigits: exponent,
    });
    // A decimal string is formatted exactly (no binary floating point on the way).
    return format.format(text);
  } catch {
    return `${text} ${currency}`;
  }
}
