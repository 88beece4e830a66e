//! Hold-expiry timing wheel. (being written)
