package shop.interop;

import java.net.URI;
import java.util.List;
import java.util.Map;

import io.cloudevents.core.builder.CloudEventBuilder;
import io.cloudevents.core.message.Encoding;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static shop.interop.Interop.*;

/** Order services on the CloudEvents Java SDK (its Kafka serializer), in binary and structured mode. */
class CloudEventsTest {

    /** An order event as the SDK builds it; `data` carries no id or type of its own. */
    private static CloudEventBuilder order(String type, String id, String order, String product) throws Exception {
        byte[] data = JSON.writeValueAsBytes(
            Map.of("orderId", order, "items", List.of(Map.of("productId", product, "quantity", 1))));
        return CloudEventBuilder.v1()
            .withId(id)
            .withType(type)
            .withSource(URI.create("/order-service"))
            .withData("application/json", data);
    }

    @Test
    void binary_mode_with_the_exact_type_is_answered_and_its_id_is_the_cause() throws Exception {
        String product = unique("p");
        String order = unique("o");
        String ceId = unique("ce");
        seed(product, 5);
        try (Reader<byte[]> outcomes = read(inventoryTopic())) {
            sendCloudEvent(orderTopic(), order, order("OrderCreatedEvent", ceId, order, product).build(), Encoding.BINARY);
            Outcome reserved = outcome(outcomes, order);
            assertEquals("InventoryReservedEvent", reserved.type(), reserved.json().toString());
            assertEquals(ceId, reserved.text("causationId"), "the CloudEvents id is the event id");
        }
    }

    @Test
    void binary_mode_with_a_reverse_dns_type_is_mapped_by_the_alias_setting() throws Exception {
        String product = unique("p");
        String order = unique("o");
        seed(product, 5);
        try (Reader<byte[]> outcomes = read(inventoryTopic())) {
            sendCloudEvent(orderTopic(), order,
                order("com.shop.order.created", unique("ce"), order, product).build(), Encoding.BINARY);
            Outcome reserved = outcome(outcomes, order);
            assertEquals("InventoryReservedEvent", reserved.type(), reserved.json().toString());
        }
    }

    @Test
    void structured_mode_is_answered_with_its_correlation_and_trace_extensions() throws Exception {
        String product = unique("p");
        String order = unique("o");
        String ceId = unique("ce");
        String correlation = unique("corr");
        String traceparent = traceparent();
        seed(product, 5);
        try (Reader<byte[]> outcomes = read(inventoryTopic())) {
            // Structured: one JSON envelope as the value; the extensions live inside it, not in headers.
            sendCloudEvent(orderTopic(), order, order("OrderCreatedEvent", ceId, order, product)
                .withExtension("correlationid", correlation)
                .withExtension("traceparent", traceparent)
                .build(), Encoding.STRUCTURED);
            Outcome reserved = outcome(outcomes, order);
            assertEquals("InventoryReservedEvent", reserved.type(), reserved.json().toString());
            assertEquals(ceId, reserved.text("causationId"), "the CloudEvents id is the event id");
            assertEquals(correlation, reserved.text("correlationId"), "from the correlationid extension");
            assertEquals(traceparent, reserved.header("traceparent"), "from the traceparent extension");
        }
    }
}
