"use strict";
// Starts Swagger UI on the page's #swagger-ui element. The OpenAPI document's URL comes from the element's
// data-openapi-url attribute, so the page holds no inline script (its Content-Security-Policy allows none).
(function () {
  var element = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: element.dataset.openapiUrl,
    domNode: element,
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null, // the public validator is a third-party origin
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
