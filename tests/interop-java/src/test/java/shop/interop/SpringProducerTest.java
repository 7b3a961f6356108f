package shop.interop;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.shop.order.event.Item;
import com.shop.order.event.OrderCancelledEvent;
import com.shop.order.event.OrderCreatedEvent;
import com.shop.order.event.OrderEvents;
import com.shop.order.event.OrderWithIdCreatedEvent;
import com.shop.payment.event.PaymentFailedEvent;
import com.shop.payment.event.PaymentSucceededEvent;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.springframework.kafka.support.serializer.JsonSerializer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static shop.interop.Interop.*;

/** A Spring order or payment service, producing with `JsonSerializer`. */
class SpringProducerTest {

    /** Sends `event` the way a Spring service does: JSON value, `__TypeId__` header, plus `headers`. */
    @SuppressWarnings({"deprecation", "removal"})
    static void springSend(String topic, String key, Object event, Map<String, Object> config,
                           Map<String, String> headers) throws Exception {
        JsonSerializer<Object> serializer = new JsonSerializer<>();
        serializer.configure(config, false);
        try (KafkaProducer<String, Object> producer =
                 new KafkaProducer<>(producerProps(), new StringSerializer(), serializer)) {
            ProducerRecord<String, Object> record = new ProducerRecord<>(topic, key, event);
            headers.forEach((k, v) -> record.headers().add(k, v.getBytes(StandardCharsets.UTF_8)));
            producer.send(record).get();
        }
    }

    static void springSend(String topic, String key, Object event) throws Exception {
        springSend(topic, key, event, Map.of(), Map.of());
    }

    @Test
    void a_plain_spring_order_is_reserved_and_the_answer_names_its_type_for_spring() throws Exception {
        String product = id("p");
        String order = id("o");
        stock(product, 5);
        try (Reader outcomes = new Reader(inventoryTopic())) {
            springSend(orderTopic(), order, new OrderCreatedEvent(order, List.of(new Item(product, 2))));
            ConsumerRecord<String, byte[]> answer = outcome(outcomes, order);
            JsonNode json = json(answer);
            assertEquals("InventoryReservedEvent", json.get("eventType").asText());
            assertEquals(order, json.get("orderId").asText());
            assertEquals(2, json.get("items").get(0).get("quantity").asInt());
            assertEquals("InventoryReservedEvent", header(answer, "__TypeId__"), "the logical type name for Spring's mapping");
            assertEquals("1.0", header(answer, "ce_specversion"));
        }
        assertEquals(2, stockOf(product).get("reserved").asInt());
    }

    @Test
    void a_long_order_id_comes_back_as_a_number() throws Exception {
        String product = id("p");
        long order = 9_451_057_838_483L + (System.nanoTime() % 1_000_000);
        stock(product, 5);
        try (Reader outcomes = new Reader(inventoryTopic())) {
            springSend(orderTopic(), Long.toString(order),
                new com.shop.order.event.numeric.OrderCreatedEvent(order, List.of(new Item(product, 1))));
            JsonNode json = json(outcome(outcomes, Long.toString(order)));
            assertTrue(json.get("orderId").isNumber(), "orderId is a JSON number: " + json);
            assertEquals(order, json.get("orderId").asLong());
        }
    }

    @Test
    void a_nested_class_type_id_is_understood() throws Exception {
        String product = id("p");
        String order = id("o");
        stock(product, 5);
        try (Reader outcomes = new Reader(inventoryTopic())) {
            springSend(orderTopic(), order, new OrderEvents.OrderCreatedEvent(order, List.of(new Item(product, 1))));
            assertEquals("InventoryReservedEvent", json(outcome(outcomes, order)).get("eventType").asText());
        }
    }

    @Test
    void a_spring_type_alias_is_mapped_by_the_alias_setting() throws Exception {
        String product = id("p");
        String order = id("o");
        stock(product, 5);
        Map<String, Object> aliased = Map.of(JsonSerializer.TYPE_MAPPINGS, "orderCreated:" + OrderCreatedEvent.class.getName());
        try (Reader outcomes = new Reader(inventoryTopic())) {
            springSend(orderTopic(), order, new OrderCreatedEvent(order, List.of(new Item(product, 1))), aliased, Map.of());
            assertEquals("InventoryReservedEvent", json(outcome(outcomes, order)).get("eventType").asText());
        }
    }

    @Test
    void any_event_id_string_is_echoed_and_a_resend_changes_nothing() throws Exception {
        String product = id("p");
        String order = id("o");
        String eventId = id("evt-42");
        stock(product, 5);
        OrderWithIdCreatedEvent event =
            new OrderWithIdCreatedEvent(eventId, "OrderCreatedEvent", order, List.of(new Item(product, 1)));
        try (Reader outcomes = new Reader(inventoryTopic())) {
            springSend(orderTopic(), order, event);
            assertEquals(eventId, json(outcome(outcomes, order)).get("causationId").asText());
            springSend(orderTopic(), order, event);
            List<ConsumerRecord<String, byte[]>> more = outcomes.collect(r -> order.equals(r.key()), Duration.ofSeconds(5));
            assertEquals(0, more.size(), "the resent event was recognised: no second answer");
        }
        assertEquals(1, stockOf(product).get("reserved").asInt());
    }

    @Test
    void cancel_payment_failed_and_payment_succeeded_do_what_they_say() throws Exception {
        String product = id("p");
        stock(product, 10);
        String cancelled = id("o");
        String unpaid = id("o");
        String paid = id("o");
        try (Reader outcomes = new Reader(inventoryTopic())) {
            for (String order : List.of(cancelled, unpaid, paid)) {
                springSend(orderTopic(), order, new OrderCreatedEvent(order, List.of(new Item(product, 2))));
                assertEquals("InventoryReservedEvent", json(outcome(outcomes, order)).get("eventType").asText());
            }
            springSend(orderTopic(), cancelled, new OrderCancelledEvent(cancelled));
            springSend(paymentTopic(), unpaid, new PaymentFailedEvent(unpaid, "card declined"));
            springSend(paymentTopic(), paid, new PaymentSucceededEvent(paid));
            JsonNode released = json(outcomes.await(r -> cancelled.equals(r.key())
                && json(r).get("eventType").asText().equals("InventoryReleasedEvent"), "the cancel's release"));
            assertEquals("ORDER_CANCELLED", released.get("reason").asText());
            JsonNode failed = json(outcomes.await(r -> unpaid.equals(r.key())
                && json(r).get("eventType").asText().equals("InventoryReleasedEvent"), "the failed payment's release"));
            assertEquals("PAYMENT_FAILED", failed.get("reason").asText());
        }
        // The payment emits nothing; its effect is on the shelf.
        Instant deadline = Instant.now().plus(WAIT);
        JsonNode stock = stockOf(product);
        while (stock.get("quantity").asInt() != 8 && Instant.now().isBefore(deadline)) {
            Thread.sleep(200);
            stock = stockOf(product);
        }
        assertEquals(8, stock.get("quantity").asInt(), "the paid order's 2 units left the shelf: " + stock);
        assertEquals(0, stock.get("reserved").asInt(), "nothing is held any more: " + stock);
    }

    @Test
    void trace_context_comes_back_on_the_answer() throws Exception {
        String product = id("p");
        String order = id("o");
        stock(product, 5);
        String traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        try (Reader outcomes = new Reader(inventoryTopic())) {
            springSend(orderTopic(), order, new OrderCreatedEvent(order, List.of(new Item(product, 1))), Map.of(),
                Map.of("traceparent", traceparent, "tracestate", "congo=t61rcWkgMzE"));
            ConsumerRecord<String, byte[]> answer = outcome(outcomes, order);
            assertEquals(traceparent, header(answer, "traceparent"));
            assertEquals("congo=t61rcWkgMzE", header(answer, "tracestate"));
        }
    }
}
