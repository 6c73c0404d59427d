/** The protocol spine: frame types and builders, the state reducer, and the store. No I/O. */
export * from './frames';
export * from './state';
export * from './store';
export * from './moderation';
