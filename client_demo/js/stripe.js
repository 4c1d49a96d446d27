// stripe.js — paying for coins with a card through Stripe, in the viewer page's checkout.
//
// The server says which provider takes web payments (`GET /v1/payments/providers`). With
// Stripe, `POST /v1/purchases` with {"provider": "stripe"} answers the order with a `stripe`
// block: the PaymentIntent's `client_secret`, the `publishable_key` and `js_url`, where
// Stripe.js must be loaded from (Stripe serves it only from its own origin, never bundled).
// The card field is Stripe's own Element: card numbers never reach this page's code or our
// server. Confirming the PaymentIntent charges the card; the coins arrive later, when
// Stripe's signed webhook reaches the server, exactly as with every other provider.

const scripts = new Map(); // js_url -> Promise of window.Stripe, one <script> per URL

/** Stripe.js from `url`, added to the page once (a failed load may be tried again). */
function loadStripeJs(url) {
  if (typeof window.Stripe === "function") return Promise.resolve(window.Stripe);
  let loading = scripts.get(url);
  if (loading === undefined) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = url;
      script.async = true;
      script.dataset.testid = "stripe-js";
      script.addEventListener("load", () => {
        if (typeof window.Stripe === "function") resolve(window.Stripe);
        else reject(new Error("Stripe.js loaded but did not define Stripe"));
      });
      script.addEventListener("error", () => {
        scripts.delete(url);
        script.remove();
        reject(new Error(`Stripe.js could not be loaded from ${url}`));
      });
      document.head.append(script);
    });
    scripts.set(url, loading);
  }
  return loading;
}

// The card field in the page's colours (Stripe draws it inside its own frame).
const CARD_STYLE = {
  base: { color: "#eef0f4", fontSize: "16px", iconColor: "#9aa3b2", "::placeholder": { color: "#9aa3b2" } },
  invalid: { color: "#ffb020", iconColor: "#ffb020" },
};

/** One Stripe card field for the page: loaded on the first checkout, then kept mounted. */
export class StripeCard {
  /** `config`: the providers answer's `stripe` block ({publishable_key, js_url}). */
  constructor(config, { onChange = () => {} } = {}) {
    this.publishableKey = config.publishable_key;
    this.jsUrl = config.js_url;
    this.onChange = onChange;
    this.stripe = null;
    this.card = null; // the mounted card Element
    this.mounting = null; // the promise of the mount, made once
  }

  /** Load Stripe.js (once) and mount the card field in `container` (once; a failed load is
   *  tried again on the next call). */
  mount(container) {
    this.mounting ??= this.mountOnce(container).catch((error) => {
      this.mounting = null;
      throw error;
    });
    return this.mounting;
  }

  async mountOnce(container) {
    const Stripe = await loadStripeJs(this.jsUrl);
    this.stripe = Stripe(this.publishableKey);
    const card = this.stripe.elements().create("card", { style: CARD_STYLE });
    // Stripe says what is wrong with the number as it is typed (event.error).
    card.on("change", (event) => this.onChange(event?.error?.message ?? ""));
    container.replaceChildren();
    card.mount(container);
    this.card = card;
  }

  /** Empty the field for the next purchase (Stripe.js has clear(); a stand-in may not). */
  clear() {
    if (typeof this.card?.clear === "function") this.card.clear();
  }

  /**
   * Confirm the order's PaymentIntent with the card in the field: Stripe charges the card,
   * asking the buyer for 3D Secure when the bank wants it. Answers {received: true} when
   * Stripe took the payment (the coins follow by webhook), or {received: false, message}
   * with Stripe's own sentence (a declined card, an expired one…): nothing was charged.
   */
  async confirm(clientSecret) {
    let result;
    try {
      result = await this.stripe.confirmCardPayment(clientSecret, { payment_method: { card: this.card } });
    } catch {
      return { received: false, message: "Stripe could not be reached. Nothing was charged; try again." };
    }
    if (result?.error) {
      return { received: false, message: result.error.message || "The card was not charged. Try again or use another card." };
    }
    const status = result?.paymentIntent?.status;
    if (status === "succeeded" || status === "processing" || status === "requires_capture") {
      return { received: true, paymentIntent: result.paymentIntent };
    }
    return { received: false, message: "The payment was not completed. Nothing was charged; try again." };
  }
}
