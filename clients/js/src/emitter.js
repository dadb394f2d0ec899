// A small event emitter: the seed's objects are EventEmitters, and Node's
// `events` module is not in browsers.

export class Emitter {
  #listeners = new Map();

  /** on adds listener for event and returns this. */
  on(event, listener) {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = []));
    set.push(listener);
    this._listenerAdded?.(event);
    return this;
  }

  /** once adds a listener called at most once. */
  once(event, listener) {
    const wrapped = (...args) => {
      this.off(event, wrapped);
      listener.apply(this, args);
    };
    wrapped.listener = listener;
    return this.on(event, wrapped);
  }

  /** off removes listener. */
  off(event, listener) {
    const set = this.#listeners.get(event);
    if (!set) return this;
    const i = set.findIndex((l) => l === listener || l.listener === listener);
    if (i >= 0) set.splice(i, 1);
    if (set.length === 0) this.#listeners.delete(event);
    return this;
  }

  removeListener(event, listener) {
    return this.off(event, listener);
  }

  removeAllListeners(event) {
    if (event === undefined) this.#listeners.clear();
    else this.#listeners.delete(event);
    return this;
  }

  listenerCount(event) {
    return this.#listeners.get(event)?.length ?? 0;
  }

  /**
   * emit calls the listeners of event in order. A listener that throws is
   * reported on 'error' (or, with none, on the console): it never breaks
   * the client's own loops.
   */
  emit(event, ...args) {
    const set = this.#listeners.get(event);
    if (!set) return false;
    for (const l of [...set]) {
      try {
        l.apply(this, args);
      } catch (e) {
        if (event !== 'error' && this.listenerCount('error') > 0) this.emit('error', e);
        else console.error(e);
      }
    }
    return true;
  }
}
